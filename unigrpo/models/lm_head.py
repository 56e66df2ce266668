"""The embedding accessors of a masked LM laid out as ``model.embed_tokens`` + ``lm_head`` (Dream, LLaDA-MoE)."""


class EmbedTokensLMHeadMixin:
    """``PreTrainedModel``'s embedding hooks (resizing, tying) and the mask id, for a trunk at ``self.model`` with
    ``embed_tokens`` and an untied-by-default ``self.lm_head``."""

    @property
    def mask_token_id(self) -> int:
        return self.config.mask_token_id

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value
