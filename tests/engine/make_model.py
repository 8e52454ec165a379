"""Write a tiny random-weight llama GGUF model that a real llama.cpp server can serve.

    python tests/engine/make_model.py OUT.gguf     (needs PyPI's `gguf` and numpy)

llama architecture, dim 64, 2 layers, 4 heads, feed-forward 128, context 2048, F16
matrices: ~270 KB, written in well under a second, no download. Its vocabulary is a
SentencePiece (`llama`) one: `<unk>`, `<s>`, `</s>`, the ChatML control tokens, the 256
byte-fallback tokens typed BYTE, then readable pieces (`▁` for a space); every token
text is unique (llama.cpp aborts on duplicates). A ChatML chat template in the metadata
makes `/v1/chat/completions` work.

A random model that samples byte or control tokens writes invalid UTF-8, and the server
ends the stream with HTTP 500. So the output is biased: one residual dimension is kept
at 1 (its embedding column is 1, that row is zero in every `attn_output`/`ffn_down`),
`output_norm` scales it up, and `output.weight` gives readable pieces +1 and every other
token -1 in that column. Only readable pieces are ever sampled — EOS neither: an answer
ends on `max_tokens` or a stop string. Temperature 0 is deterministic. The same weights
serve `/v1/embeddings` (mean pooling).
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np

DIM, LAYERS, HEADS, FF, CONTEXT = 64, 2, 4, 128, 2048
KEPT = 0  # the residual dimension that carries the bias
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' +"
    " message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
WORDS = (
    "the a an and or but of to in on at by for with from as is was are be it this that"
    " we you they he she one two three four five six seven eight nine ten cat dog bird"
    " fish tree river stone cloud rain sun moon star light night day morning evening"
    " red green blue yellow small big quick slow happy quiet loud warm cold old new"
    " walks runs sings reads writes sees finds makes takes gives says thinks knows"
    " city road house garden window door table book letter word story song music"
    " answer question model token stream notebook test engine"
)
SYMBOLS = list(".,!?;:'\"-()[]{}") + [str(d) for d in range(10)]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [
    chr(c) for c in range(ord("A"), ord("Z") + 1)
]

# gguf token types
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def vocabulary() -> tuple[list[str], list[float], list[int], int]:
    """(tokens, scores, types, index of the first readable piece)."""
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [UNKNOWN, CONTROL, CONTROL, CONTROL, CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    first_readable = len(tokens)
    pieces = ["▁" + w for w in WORDS.split()] + ["▁"] + LETTERS + SYMBOLS
    pieces += ["▁" + s for s in SYMBOLS] + ["\n"]
    pieces = list(dict.fromkeys(pieces))  # unique, in order
    tokens += pieces
    types += [NORMAL] * len(pieces)
    # SentencePiece scores: longer pieces first when the tokenizer merges.
    scores = [0.0] * first_readable + [float(len(p)) - i * 1e-4 for i, p in enumerate(pieces)]
    assert len(set(tokens)) == len(tokens)
    return tokens, scores, types, first_readable


def write(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    tokens, scores, types, first_readable = vocabulary()
    vocab = len(tokens)

    def matrix(rows: int, cols: int, scale: float = 0.1) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("ollama-nb tiny random model")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(DIM)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(DIM // HEADS)
    writer.add_vocab_size(vocab)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML)

    embedding = matrix(vocab, DIM, 0.5)
    embedding[:, KEPT] = 1.0
    output = matrix(vocab, DIM, 1.0)
    output[:, KEPT] = -1.0
    output[first_readable:, KEPT] = 1.0
    output_norm = np.ones(DIM, dtype=np.float32)
    output_norm[KEPT] = 50.0

    def f16(array: np.ndarray) -> np.ndarray:
        return array.astype(np.float16)

    writer.add_tensor("token_embd.weight", f16(embedding))
    for layer in range(LAYERS):
        attn_output = matrix(DIM, DIM)
        attn_output[KEPT, :] = 0.0
        ffn_down = matrix(DIM, FF)
        ffn_down[KEPT, :] = 0.0
        blk = f"blk.{layer}"
        writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(DIM, dtype=np.float32))
        writer.add_tensor(f"{blk}.attn_q.weight", f16(matrix(DIM, DIM)))
        writer.add_tensor(f"{blk}.attn_k.weight", f16(matrix(DIM, DIM)))
        writer.add_tensor(f"{blk}.attn_v.weight", f16(matrix(DIM, DIM)))
        writer.add_tensor(f"{blk}.attn_output.weight", f16(attn_output))
        writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(DIM, dtype=np.float32))
        writer.add_tensor(f"{blk}.ffn_gate.weight", f16(matrix(FF, DIM)))
        writer.add_tensor(f"{blk}.ffn_up.weight", f16(matrix(FF, DIM)))
        writer.add_tensor(f"{blk}.ffn_down.weight", f16(ffn_down))
    writer.add_tensor("output_norm.weight", output_norm)
    writer.add_tensor("output.weight", f16(output))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_model.py OUT.gguf")
    print(write(Path(sys.argv[1])))
