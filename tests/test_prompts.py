from unigrpo.models import load_tokenizer
from unigrpo.prompts import completions_for_rewards, prompt_texts


def test_plain_and_chat_prompts(micro_model_dir):
    tok = load_tokenizer(micro_model_dir)
    chat = [{"role": "user", "content": "2+2?"}]
    plain, templated = prompt_texts(["2+2=", chat], tok)
    assert plain == "2+2="
    assert templated == tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert completions_for_rewards(["4"], {"prompt": "2+2="}) == ["4"]
    assert completions_for_rewards(["4"], {"prompt": chat}) == [[{"role": "assistant", "content": "4"}]]
