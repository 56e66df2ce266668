"""Rewards for launched test runs (``--reward_funcs tests.dense_rewards:NAME``): importable without pytest's path."""


def answer_length(prompts, completions, **kwargs):
    """The answer's length in characters: a reward that varies between the answers of a random model."""
    return [float(len(c)) for c in completions]
