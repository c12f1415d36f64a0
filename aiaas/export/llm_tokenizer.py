"""The GGUF's byte-level BPE vocabulary as a `tokenizers` tokenizer.json, which the
serving path loads with `tokenizers` alone (no transformers).

The text is split before BPE the way llama.cpp splits it for the file's pre-tokenizer
name (`tokenizer.ggml.pre`): SmolLM and StarCoder vocabularies were trained with every
digit on its own, the others with GPT-2's regex. Control tokens (<|im_start|>,
<|im_end|>, ...) are added as special tokens, so chat markup in a prompt becomes one id
each and `decode(skip_special_tokens=True)` drops them.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from aiaas.export.gguf_reader import CONTROL_TOKEN, USER_DEFINED_TOKEN, GGUFTokenizer

#: llama.cpp pre-tokenizers that isolate each digit before GPT-2's split (llama-vocab.cpp).
_DIGIT_SPLIT_PRE = frozenset({"smollm", "starcoder", "refact", "codeshell", "command-r", "exaone"})


def build_tokenizer(source: GGUFTokenizer) -> Tokenizer:
    vocab = {token: index for index, token in enumerate(source.tokens)}
    merges = [tuple(merge.split(" ", 1)) for merge in source.merges]
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False)  # type: ignore[arg-type]
    )
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if source.pre in _DIGIT_SPLIT_PRE:
        digits = pre_tokenizers.Digits(individual_digits=True)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = _post_processor(source)
    kinds = list(zip(source.tokens, source.token_types, strict=False))
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in kinds if k == CONTROL_TOKEN]
    )
    tokenizer.add_tokens(
        [
            AddedToken(t, special=False, normalized=False)
            for t, k in kinds
            if k == USER_DEFINED_TOKEN
        ]
    )
    return tokenizer


def _post_processor(source: GGUFTokenizer) -> processors.PostProcessor:
    """BOS in front when the file asks for it (SmolLM2 does not), else byte-level offsets."""
    if not source.add_bos_token or source.bos_token_id is None:
        return processors.ByteLevel(trim_offsets=False)
    bos = source.tokens[source.bos_token_id]
    return processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, source.bos_token_id)]
    )
