"""An offline CLIP tokenizer for the toy world: byte-level characters plus the world's words as whole tokens.

Any text tokenizes (unknown words fall back to characters); the world's caption words are single
tokens, so a short context (32) holds every caption. Start/end tokens are the last two ids, so
CLIP's pooling at the end token works under either of its conventions (first end token, or argmax id).
"""

from __future__ import annotations

from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTokenizer

from toyworld.world import vocabulary

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MODEL_MAX_LENGTH = 32


def _byte_tokens() -> list[str]:
    chars = sorted(ByteLevel.alphabet())  # the 256 characters byte-level BPE maps bytes to
    return chars + [c + "</w>" for c in chars]


def _chain_merges(word: str) -> list[tuple[str, str]]:
    # Left to right: ("f","a"), ("fa","c"), ("fac","e</w>") makes "face</w>" one token.
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    merges, prefix = [], symbols[0]
    for symbol in symbols[1:]:
        merges.append((prefix, symbol))
        prefix += symbol
    return merges


def _make(vocab_list: list[str], merges: list[tuple[str, str]]) -> CLIPTokenizer:
    vocab = {token: i for i, token in enumerate(vocab_list + [BOS, EOS])}
    return CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=MODEL_MAX_LENGTH)


def build_world_tokenizer(extra_words: tuple[str, ...] = ()) -> CLIPTokenizer:
    """The toy world's CLIP tokenizer (deterministic: same words, same ids)."""
    words = sorted(set(vocabulary()) | set(extra_words))
    vocab_list = _byte_tokens()
    merges: list[tuple[str, str]] = []
    for word in words:
        for merge in _chain_merges(word):
            if merge not in merges:
                merges.append(merge)
    # One word's early merge can split another word differently ("red" hijacks "g|r|e|e|n");
    # then join whatever pieces remain, with merges ranked after all others, until each word is one token.
    for _ in range(8):
        for merge in merges:
            token = merge[0] + merge[1]
            if token not in vocab_list:
                vocab_list.append(token)
        tokenizer = _make(vocab_list, merges)
        split = {w: tokenizer.tokenize(w) for w in words}
        broken = {w: pieces for w, pieces in split.items() if len(pieces) > 1}
        if not broken:
            return tokenizer
        for pieces in broken.values():
            prefix = pieces[0]
            for piece in pieces[1:]:
                if (prefix, piece) not in merges:
                    merges.append((prefix, piece))
                prefix += piece
    raise AssertionError(f"could not make whole-word tokens for {sorted(broken)}")
