"""The split-point study: bytes a frame against accuracy, for every split x codec x head.

    python -m bench.study [--images 10000] [--splits stem,stage1] [--codecs int8-channel,clip4+zstd]
                          [--heads float32,int8] [--wire-seconds 3] [--out results/]

For each split and head (the float32 head and the INT8 head of ``training.quantize``) every
test image goes through the head once; its latent is then encoded with every codec
(``splitcore.wire.codecs``), framed into data-channel messages (``splitcore.wire.frame``), reassembled,
decoded, and, once per quantizer (the compressors are lossless: the decoded tensors of
``q``, ``q+zlib`` and ``q+zstd`` are checked equal on every image), run through the
float32 tail. Measured per row:

- payload bytes per frame: the whole messages (header + codec params + payload, over all
  fragments), i.e. what the data channel's ``bytesSent`` counts; mean over images;
- wire bytes per frame: real messages of the first images sent over a real aiortc data
  channel at 30 fps for ``--wire-seconds`` (``bench.wire``), transport ``bytesSent``; once
  per (split, codec) with the float32 head; INT8-head rows add that measured per-frame
  overhead to their own payload (``wire_measured: false``);
- top-1 on the test images, top-1 agreement with the full float32 model, max |logit diff|;
- head, tail, encode (codec + framing) and decode (reassembly + codec) ms per frame:
  medians, ONNX Runtime with one thread, batch 1;
- the head model's size in bytes.

Baselines on the same table: raw 32x32 RGB uint8 pixels (3,072 B), the float32 input
(12,288 B) and JPEGs of the 32x32 frame (``cv2.imencode``, quality 90 and others), each
classified by the full model; their bytes are the bare payload, no frame header. Writes
``study.json``, ``study.md``, ``bytes_vs_accuracy.png`` and ``bytes_per_split.png`` under
``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import cv2
import numpy as np
from tqdm import tqdm

from splitcore.runtime.models import DEFAULT_MANIFEST, Manifest, ModelError, Runner
from splitcore.runtime.preprocess import to_input
from splitcore.wire import codecs, frame
from splitcore.wire.frame import Header, Reassembler

ROOT = Path(__file__).resolve().parent.parent
COMPRESSIONS = ("", "zlib", "zstd")
ALL_CODECS = tuple(q + (f"+{c}" if c else "") for q in codecs.QUANTIZERS for c in COMPRESSIONS)
HEADS = ("float32", "int8")
JPEG_QUALITIES = (90, 75, 50)
_now = time.perf_counter


# ------------------------------------------------------------------------ the frame path


def frame_messages(latent: np.ndarray, spec: codecs.CodecSpec, split: str, seq: int = 0) -> list[bytes]:
    """What a sender puts on the data channel for one latent: encode, then frame."""
    dtype, codec, params, payload = codecs.encode(latent, spec)
    h = Header(seq, 0.0, split, tuple(latent.shape), dtype, codec, spec.compression, params=params)
    return frame.encode(h, payload)


def decode_messages(messages: list[bytes], channels: codecs.ChannelCalibration | None = None) -> np.ndarray:
    """What a receiver makes of them: parse, reassemble, decode to float32."""
    r, done = Reassembler(), None
    for m in messages:
        h, part = frame.decode(m)
        done, _ = r.push(h, part)
    if done is None:
        raise ValueError("messages do not make a complete frame")
    h, payload = done
    return codecs.decode_tensor(h, payload, channels=channels)


def header_bytes(messages: list[bytes]) -> int:
    return sum(frame.decode(m)[0].header_len for m in messages)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> tuple[bytes, np.ndarray, float, float]:
    """(JPEG bytes, decoded RGB, encode ms, decode ms) of one 32x32 RGB uint8 frame."""
    t0 = _now()
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    t1 = _now()
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("cv2.imdecode failed on its own JPEG")
    dec = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    t2 = _now()
    return buf.tobytes(), dec, (t1 - t0) * 1e3, (t2 - t1) * 1e3


# -------------------------------------------------------------------------- accumulators


@dataclass
class Acc:
    """Per-image measurements of one row."""

    bytes: list[int] = field(default_factory=list)
    payload: list[int] = field(default_factory=list)
    enc_ms: list[float] = field(default_factory=list)
    dec_ms: list[float] = field(default_factory=list)
    messages: int = 0
    headers: int = 0
    raw_bytes: int = 0
    lossless_mismatches: int = 0
    comp_ms: list[float] = field(default_factory=list)
    decomp_ms: list[float] = field(default_factory=list)


@dataclass
class Quality:
    """Per-image outcome of one quantizer (or baseline) through the tail (or full model)."""

    correct: int = 0
    agree: int = 0
    n: int = 0
    max_diff: float = 0.0
    sum_diff: float = 0.0
    tail_ms: list[float] = field(default_factory=list)

    def add(self, logits: np.ndarray, label: int, ref: np.ndarray) -> None:
        top = int(logits.argmax())
        self.correct += top == label
        self.agree += top == int(ref.argmax())
        d = float(np.abs(logits - ref).max())
        self.max_diff = max(self.max_diff, d)
        self.sum_diff += d
        self.n += 1

    def summary(self) -> dict:
        n = max(1, self.n)
        return {"top1": self.correct / n, "agreement": self.agree / n, "max_abs_logit_diff": self.max_diff,
                "mean_max_abs_logit_diff": self.sum_diff / n}


def med(v: list[float]) -> float | None:
    return round(float(median(v)), 4) if v else None


# ----------------------------------------------------------------------------- the work


@dataclass
class Context:
    manifest: Manifest
    images: np.ndarray          # [N, 32, 32, 3] uint8 RGB
    labels: np.ndarray
    full_logits: np.ndarray     # [N, 10] float32, the reference
    full_ms: list[float]
    codecs: tuple[str, ...] = ALL_CODECS
    wire_frames: int = 90
    compressor_frames: int = 1000  # frames on which compression alone is timed as well


def full_reference(m: Manifest, images: np.ndarray, progress=None) -> tuple[np.ndarray, list[float]]:
    runner = Runner(m.full, m.input_shape, threads=1)
    x = to_input(images)
    out = np.empty((len(x), runner.output.size), np.float32)
    times = []
    for i in range(len(x)):
        t0 = _now()
        out[i] = runner.run(x[i:i + 1]).ravel()
        times.append((_now() - t0) * 1e3)
        if progress:
            progress(1)
    return out, times


def head_file(m: Manifest, split: str, head: str):
    point = m.split(split)
    if head == "float32":
        return point.head
    if point.head_int8 is None:
        raise ModelError(f"split {split} has no INT8 head in {m.path}: run `python -m training.quantize`")
    return point.head_int8


def wire_indices(n: int, count: int) -> set[int]:
    """Frames for the wire test, spread over the images (the test set is sorted by class)."""
    return set() if count <= 0 else {int(i) for i in np.linspace(0, n - 1, min(n, count)).round()}


def time_compressor(latent: np.ndarray, spec: codecs.CodecSpec, a: Acc) -> None:
    """The lossless stage alone, on this frame's quantized bytes (splitcore.wire.codecs' own
    compress/decompress steps, which ``codecs.encode``/``decode_tensor`` run)."""
    dtype, codec, params, raw = codecs._quantize(np.ascontiguousarray(latent, np.float32), spec)
    t0 = _now()
    packed = codecs._compress(raw, spec.compression)
    t1 = _now()
    h = Header(0, 0.0, "x", tuple(latent.shape), dtype, codec, spec.compression, len(packed), params=params)
    codecs._decompress(h, packed, len(raw))
    t2 = _now()
    a.comp_ms.append((t1 - t0) * 1e3)
    a.decomp_ms.append((t2 - t1) * 1e3)


def run_split(ctx: Context, split: str, head: str, progress=None) -> tuple[list[dict], dict]:
    """Rows of one split and head; plus {codec: first wire_frames frames' messages}."""
    m = ctx.manifest
    point = m.split(split)
    hf = head_file(m, split, head)
    head_r = Runner(hf, m.input_shape, threads=1)
    tail_r = Runner(point.tail, point.shape, threads=1)
    specs = {c: point.codec(c) for c in ctx.codecs}
    quants = list(dict.fromkeys(s.quantizer for s in specs.values()))
    acc = {c: Acc() for c in ctx.codecs}
    qual = {q: Quality() for q in quants}
    head_ms: list[float] = []
    keep: dict[str, list[list[bytes]]] = {c: [] for c in ctx.codecs}
    wire_idx = wire_indices(len(ctx.images), ctx.wire_frames) if head == "float32" else set()
    x = to_input(ctx.images)
    for i in range(len(x)):
        t0 = _now()
        latent = head_r.run(x[i:i + 1])
        head_ms.append((_now() - t0) * 1e3)
        decoded: dict[str, np.ndarray] = {}
        for c, spec in specs.items():
            a = acc[c]
            t0 = _now()
            msgs = frame_messages(latent, spec, split, i)
            t1 = _now()
            y = decode_messages(msgs, spec.channels)
            t2 = _now()
            a.enc_ms.append((t1 - t0) * 1e3)
            a.dec_ms.append((t2 - t1) * 1e3)
            size = sum(map(len, msgs))
            if i == 0:
                a.messages, a.headers = len(msgs), header_bytes(msgs)
                h = frame.decode(msgs[0])[0]
                a.raw_bytes = codecs.raw_size(h)
            a.bytes.append(size)
            a.payload.append(size - a.headers)
            if i in wire_idx:
                keep[c].append(msgs)
            if i < ctx.compressor_frames and spec.compression != frame.Compression.NONE:
                time_compressor(latent, spec, a)
            q = spec.quantizer
            if q in decoded:
                a.lossless_mismatches += not np.array_equal(decoded[q], y)
                continue
            decoded[q] = y
            t0 = _now()
            logits = tail_r.run(y)
            qual[q].tail_ms.append((_now() - t0) * 1e3)
            qual[q].add(logits.ravel(), int(ctx.labels[i]), ctx.full_logits[i])
        if progress:
            progress(1)
    rows = []
    for c, spec in specs.items():
        a, qq = acc[c], qual[spec.quantizer]
        payload_mean = float(np.mean(a.payload))
        rows.append({
            "kind": "latent", "split": split, "head": head, "codec": c, "quantizer": spec.quantizer,
            "compression": c.partition("+")[2] or "none", "shape": list(point.shape),
            "raw_payload_bytes": a.raw_bytes, "header_bytes": a.headers, "messages_per_frame": a.messages,
            "payload_bytes": float(np.mean(a.bytes)), "payload_bytes_min": int(min(a.bytes)),
            "payload_bytes_max": int(max(a.bytes)),
            "compression_ratio": a.raw_bytes / payload_mean if payload_mean else None,
            **qq.summary(), "images": qq.n,
            "head_ms": med(head_ms), "tail_ms": med(qq.tail_ms), "encode_ms": med(a.enc_ms),
            "decode_ms": med(a.dec_ms), "compress_ms": med(a.comp_ms), "decompress_ms": med(a.decomp_ms),
            "head_bytes": hf.path.stat().st_size, "head_params": hf.params,
            "head_macs": hf.macs, "lossless_mismatches": a.lossless_mismatches,
        })
    return rows, keep


def baselines(ctx: Context, qualities: tuple[int, ...] = JPEG_QUALITIES, progress=None) -> tuple[list[dict], dict]:
    """Rows for raw pixels, the float32 input and JPEGs; plus their wire frames."""
    m = ctx.manifest
    full = Quality(tail_ms=ctx.full_ms)
    for i in range(len(ctx.images)):
        full.add(ctx.full_logits[i], int(ctx.labels[i]), ctx.full_logits[i])
    fsize = m.full.path.stat().st_size
    common = {"kind": "baseline", "split": "input", "head": None, "quantizer": None, "compression": None,
              "header_bytes": 0, "messages_per_frame": 1, "head_ms": 0.0, "tail_ms": med(ctx.full_ms),
              "head_bytes": 0, "head_params": 0, "head_macs": 0, "tail_bytes": fsize, "images": len(ctx.images)}
    wire_idx = wire_indices(len(ctx.images), ctx.wire_frames)
    raw_frames = [[ctx.images[i].tobytes()] for i in sorted(wire_idx)]
    f32_frames = [[to_input(ctx.images[i]).tobytes()] for i in sorted(wire_idx)]
    rows = [
        {**common, "codec": "raw-uint8", "shape": [32, 32, 3], "raw_payload_bytes": 3072, "payload_bytes": 3072.0,
         "payload_bytes_min": 3072, "payload_bytes_max": 3072, "encode_ms": 0.0, "decode_ms": None,
         **full.summary()},
        {**common, "codec": "input-float32", "shape": [1, 3, 32, 32], "raw_payload_bytes": 12288,
         "payload_bytes": 12288.0, "payload_bytes_min": 12288, "payload_bytes_max": 12288,
         "encode_ms": None, "decode_ms": 0.0, **full.summary()},
    ]
    t = []
    for img in ctx.images[:200]:
        t0 = _now()
        to_input(img)
        t.append((_now() - t0) * 1e3)
    rows[0]["decode_ms"] = med(t)  # uint8 -> float32 input on the receiver
    rows[1]["encode_ms"] = med(t)  # the same conversion on the sender
    wire = {"raw-uint8": raw_frames, "input-float32": f32_frames}
    runner = Runner(m.full, m.input_shape, threads=1)
    for q in qualities:
        qual, sizes, enc, dec, frames = Quality(), [], [], [], []
        for i, img in enumerate(ctx.images):
            data, back, e, d = jpeg_roundtrip(img, q)
            sizes.append(len(data))
            enc.append(e)
            dec.append(d)
            if i in wire_idx:
                frames.append([data])
            t0 = _now()
            logits = runner.run(to_input(back))
            qual.tail_ms.append((_now() - t0) * 1e3)
            qual.add(logits.ravel(), int(ctx.labels[i]), ctx.full_logits[i])
            if progress:
                progress(1)
        name = f"jpeg-q{q}"
        wire[name] = frames
        rows.append({**common, "codec": name, "shape": [32, 32, 3], "raw_payload_bytes": 3072,
                     "payload_bytes": float(np.mean(sizes)), "payload_bytes_min": int(min(sizes)),
                     "payload_bytes_max": int(max(sizes)), "encode_ms": med(enc), "decode_ms": med(dec),
                     **qual.summary()})
    return rows, wire


def attach_wire(rows: list[dict], wire: dict) -> None:
    """Wire bytes a frame = the row's mean payload + the transport overhead a frame measured
    over the data channel for the same (split, codec) (a sample of the frames, spread over the
    images; compressed sizes vary, so the sample's own payload is not the row's mean). The
    INT8 head reuses the float32 head's measurement (``wire_measured`` false)."""
    for r in rows:
        w = wire.get((r["split"], r["codec"]))
        if not w:
            continue
        overhead = w["wire_bytes_per_frame"] - w["payload_bytes_per_frame"]
        r["wire_bytes"] = r["payload_bytes"] + overhead
        r["wire_overhead_bytes"] = overhead
        r["wire_measured"] = r["head"] in (None, "float32")
        r["wire_sample"] = {k: w[k] for k in ("frames", "payload_bytes_per_frame", "wire_bytes_per_frame",
                                              "wire_packets_per_frame", "reverse_wire_bytes_per_frame")}


# ------------------------------------------------------------------------------ analysis


def pareto(rows: list[dict]) -> list[dict]:
    """Rows not beaten by another with fewer (or equal) bytes and higher (or equal) top-1."""
    best, out = -1.0, []
    for r in sorted(rows, key=lambda r: (r["payload_bytes"], -r["top1"])):
        if r["top1"] > best:
            out.append(r)
            best = r["top1"]
    return out


def compressor_table(rows: list[dict]) -> list[dict]:
    """Per split, head and quantizer: each compressor's ratio and its extra ms."""
    base = {(r["split"], r["head"], r["quantizer"]): r for r in rows
            if r["kind"] == "latent" and r["compression"] == "none"}
    out = []
    for r in rows:
        if r["kind"] != "latent" or r["compression"] == "none":
            continue
        b = base.get((r["split"], r["head"], r["quantizer"]))
        if b is None:
            continue
        out.append({"split": r["split"], "head": r["head"], "quantizer": r["quantizer"],
                    "compression": r["compression"], "ratio": r["compression_ratio"],
                    "bytes_saved": b["payload_bytes"] - r["payload_bytes"],
                    "compress_ms": r["compress_ms"], "decompress_ms": r["decompress_ms"]})
    return out


def headline(rows: list[dict]) -> dict:
    latent = [r for r in rows if r["kind"] == "latent"]
    base = {r["codec"]: r for r in rows if r["kind"] == "baseline"}
    full_top1 = base["raw-uint8"]["top1"]
    within = [r for r in latent if r["top1"] >= full_top1 - 0.01]
    smallest_within = min(within, key=lambda r: r["payload_bytes"]) if within else None

    def brief(r: dict | None) -> dict | None:
        return None if r is None else {k: r.get(k) for k in ("split", "head", "codec", "payload_bytes", "wire_bytes",
                                                              "top1", "agreement", "max_abs_logit_diff")}

    out = {"full_top1": full_top1, "pareto": [brief(r) for r in pareto(latent)],
           "smallest_within_1pt": brief(smallest_within),
           "within_1pt_at_most_2048": bool(smallest_within and smallest_within["payload_bytes"] <= 2048)}
    for name in ("raw-uint8", "jpeg-q90"):
        if name in base:
            ref = base[name]
            cheaper = [r for r in latent if r["payload_bytes"] < ref["payload_bytes"]]
            out[f"best_below_{name}"] = brief(max(cheaper, key=lambda r: (r["top1"], -r["payload_bytes"]))
                                               if cheaper else None)
            out[f"{name}_bytes"] = ref["payload_bytes"]
            out[f"{name}_top1"] = ref["top1"]
    return out


# ------------------------------------------------------------------------------- report


def _f(v, fmt: str, dash: str = "–") -> str:
    return dash if v is None else format(v, fmt)


MD_COLS = ("head", "codec", "payload B", "wire B", "ratio", "top-1 %", "Δ pt", "agree %", "max Δlogit",
           "head ms", "enc ms", "dec ms", "tail ms", "head size")


def md_row(r: dict, full_top1: float, marks: set[int]) -> str:
    star = " ★" if id(r) in marks else ""
    wire = _f(r.get("wire_bytes"), ",.0f") + ("" if r.get("wire_measured", True) else "*")
    cells = [r["head"] or "–", f"`{r['codec']}`{star}", f"{r['payload_bytes']:,.0f}", wire,
             _f(r.get("compression_ratio"), ".2f"), f"{100 * r['top1']:.2f}", f"{100 * (r['top1'] - full_top1):+.2f}",
             f"{100 * r['agreement']:.2f}", f"{r['max_abs_logit_diff']:.3g}", _f(r["head_ms"], ".3f"),
             _f(r["encode_ms"], ".3f"), _f(r["decode_ms"], ".3f"), _f(r["tail_ms"], ".3f"),
             f"{r['head_bytes']:,}" if r["head_bytes"] else "–"]
    return "| " + " | ".join(cells) + " |"


def _groups(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r["kind"] == "latent":
            out.setdefault((r["split"], r["head"]), []).append(r)
    return out


def markdown(result: dict) -> str:
    rows, meta, head = result["rows"], result["meta"], result["headline"]
    full = head["full_top1"]
    by_key = {(r["split"], r["head"], r["codec"]): r for r in rows}
    marks = {id(by_key[(p["split"], p["head"], p["codec"])]) for p in head["pareto"]}
    lines = ["# Split-point study: bytes a frame against accuracy",
             "",
             f"{meta['images']:,} CIFAR-10 test images; {meta['date']}; {meta['cpu']} ({meta['cpus']} cores); "
             f"ONNX Runtime {meta['versions']['onnxruntime']}, one thread, batch 1. Full model top-1 "
             f"**{100 * full:.2f} %**. Command: `{meta['command']}`. Load average (1/5/15 min) at the "
             f"start {meta.get('loadavg_start')}, end {meta.get('loadavg_end')}: other work on the machine "
             "inflates the ms columns.",
             "",
             "- *payload B*: mean bytes a frame on the data channel (all messages: header + params + payload); "
             "baselines are bare bytes, no header. *wire B*: payload B plus the transport overhead a frame "
             "(DTLS + SCTP, not IP/UDP) measured by sending real frames of this row over a real aiortc data "
             f"channel at {meta['fps']:g} fps for {meta['wire_seconds']:g} s (`*` = INT8 head: the overhead "
             "measured with the float32 head's frames). *ratio*: quantized bytes / compressed payload. "
             "*Δ pt*: top-1 minus the full model's, in points. *agree*: same top-1 as the full float32 model. "
             "ms: medians a frame; enc/dec include framing. ★: Pareto-optimal (no row has fewer bytes and "
             "higher top-1).",
             "- Noise: with 1-3 % of labels changed by a codec, one standard deviation of a top-1 difference "
             "is about 0.1-0.2 points on 10,000 images; smaller Δ are not differences.",
             "- The test images are themselves JPEGs of quality 75 (the data set's files use libjpeg's q75 "
             "tables), so re-encoding at q75 repeats the same quantization and loses almost nothing: the q75 "
             "baseline is optimistic, q90 and q50 are fair.",
             "", "## Headline", ""]
    s = head["smallest_within_1pt"]
    if s:
        lines.append(f"- Fewest bytes within 1.0 point of the full model: `{s['codec']}` at {s['split']} "
                     f"({s['head']} head): **{s['payload_bytes']:,.0f} B** a frame, top-1 {100 * s['top1']:.2f} % "
                     f"({'<=' if s['payload_bytes'] <= 2048 else '>'} 2,048 B).")
    for name in ("raw-uint8", "jpeg-q90"):
        b = head.get(f"best_below_{name}")
        if f"{name}_bytes" in head:
            ref = f"{name} ({head[f'{name}_bytes']:,.0f} B, top-1 {100 * head[f'{name}_top1']:.2f} %)"
            lines.append(f"- Best below {ref}: " + (
                f"`{b['codec']}` at {b['split']} ({b['head']} head), {b['payload_bytes']:,.0f} B, "
                f"top-1 {100 * b['top1']:.2f} % ({100 * (b['top1'] - head[f'{name}_top1']):+.2f} pt)." if b else "none."))
    lines += ["- Pareto front: " + ", ".join(
        f"`{p['codec']}`@{p['split']}/{p['head']} {p['payload_bytes']:,.0f} B {100 * p['top1']:.2f} %"
        for p in head["pareto"]), ""]
    lines += ["## Smallest frame per split and head", "",
              "Within 1.0 point of the full model's top-1, and (right) the smallest with >= 99.9 % agreement.", "",
              "| split | head | head ms | codec | payload B | top-1 % | agree % | enc+dec ms "
              "| codec (>= 99.9 % agree) | payload B | top-1 % |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (split, hd), sr in _groups(rows).items():
        a = min((r for r in sr if r["top1"] >= full - 0.01), key=lambda r: r["payload_bytes"], default=None)
        b = min((r for r in sr if r["agreement"] >= 0.999), key=lambda r: r["payload_bytes"], default=None)
        cells = [split, hd, _f(sr[0]["head_ms"], ".3f")]
        cells += ([f"`{a['codec']}`", f"{a['payload_bytes']:,.0f}", f"{100 * a['top1']:.2f}",
                   f"{100 * a['agreement']:.2f}", f"{a['encode_ms'] + a['decode_ms']:.3f}"] if a else ["–"] * 5)
        cells += ([f"`{b['codec']}`", f"{b['payload_bytes']:,.0f}", f"{100 * b['top1']:.2f}"] if b else ["–"] * 3)
        lines.append("| " + " | ".join(cells) + " |")
    header = "| " + " | ".join(MD_COLS) + " |\n|" + "---|" * len(MD_COLS)
    lines += ["", "## Baselines (full model on the receiver)", "", header]
    lines += [md_row(r, full, marks) for r in sorted((r for r in rows if r["kind"] == "baseline"),
                                                     key=lambda r: r["payload_bytes"])]
    for split in dict.fromkeys(r["split"] for r in rows if r["kind"] == "latent"):
        sr = [r for r in rows if r["split"] == split and r["kind"] == "latent"]
        shape = "x".join(map(str, sr[0]["shape"][1:]))
        lines += ["", f"## {split} (latent {shape}, {4 * int(np.prod(sr[0]['shape'])):,} B as float32)", "", header]
        lines += [md_row(r, full, marks) for r in sorted(sr, key=lambda r: (r["head"] != "float32", r["payload_bytes"]))]
    lines += ["", "## Lossless compressors", "",
              "Ratio = quantized bytes / compressed payload (mean over images); ms = median time of the "
              "compressor alone on the quantized bytes (compress / decompress).", "",
              "| split | head | quantizer | zlib ratio | zlib ms | zstd ratio | zstd ms |",
              "|---|---|---|---|---|---|---|"]
    comp = {(c["split"], c["head"], c["quantizer"], c["compression"]): c for c in result["compressors"]}
    for key in dict.fromkeys((c["split"], c["head"], c["quantizer"]) for c in result["compressors"]):
        cells = list(key)
        for name in ("zlib", "zstd"):
            c = comp.get((*key, name))
            cells += [_f(c and c["ratio"], ".2f"), f"{c['compress_ms']:.3f} / {c['decompress_ms']:.3f}" if c else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- main


def metadata(args, n: int, manifest: Manifest) -> dict:
    import aiortc
    import onnxruntime
    import zstandard
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    raw = json.loads(manifest.path.read_text())
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "machine": platform.machine(),
            "node": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "images": n,
            "wire_seconds": args.wire_seconds, "fps": args.fps, "ort_threads": 1, "batch": 1,
            "manifest": str(manifest.path), "full_sha256": manifest.full.sha256,
            "training": raw.get("training", {}),
            "calibration": {s["id"]: {k: s.get("calibration", {}).get(k) for k in ("clip", "percentile", "images")}
                            for s in raw["splits"]},
            "command": " ".join(["python -m bench.study", *args.argv]),
            "versions": {"python": platform.python_version(), "numpy": np.__version__,
                         "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
                         "aiortc": aiortc.__version__, "zstandard": zstandard.__version__}}


def pick_images(n: int, total: int) -> np.ndarray:
    """n indices spread evenly over the test set (it is sorted by class)."""
    return np.unique(np.linspace(0, total - 1, min(n, total)).round().astype(int))


def run(args, images: np.ndarray | None = None, labels: np.ndarray | None = None) -> dict:
    """The whole study; ``images``/``labels`` replace the test set (tests, smoke runs)."""
    from splitcore.offline.datasets import load_cifar10
    t_start = _now()
    load_start = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews the ms
    m = Manifest.load(args.manifest)
    splits = [s for s in args.splits.split(",") if s] or list(m.splits)
    heads = [h for h in args.heads.split(",") if h]
    chosen = tuple(c for c in args.codecs.split(",") if c) or ALL_CODECS
    qualities = tuple(int(q) for q in args.jpeg.split(",") if q)
    if images is None or labels is None:
        test = load_cifar10(args.data, split="test")
        idx = pick_images(args.images, len(test.images))
        images, labels = test.images[idx], test.labels[idx]
    n = len(images)
    total = n * (1 + len(qualities) + len(splits) * len(heads))
    timings = {}
    with tqdm(total=total, desc="full model", unit="img", smoothing=0.05) as bar:
        t0 = _now()
        full_logits, full_ms = full_reference(m, images, bar.update)
        ctx = Context(m, images, labels, full_logits, full_ms, chosen,
                      int(np.ceil(args.wire_seconds * args.fps)) if args.wire_seconds > 0 else 0)
        bar.set_description("baselines")
        rows, wire_frames = baselines(ctx, qualities, bar.update)
        timings["baselines_s"] = _now() - t0
        streams = [(("input", k), v) for k, v in wire_frames.items()]
        for split in splits:
            for head in heads:
                bar.set_description(f"{split}/{head}")
                t0 = _now()
                r, keep = run_split(ctx, split, head, bar.update)
                timings[f"{split}/{head}_s"] = _now() - t0
                rows += r
                streams += [((split, c), v) for c, v in keep.items() if v]
    wire = {}
    if args.wire_seconds > 0:
        from bench.wire import measure
        t0 = _now()
        with tqdm(total=len(streams), desc=f"wire @{args.fps:g} fps", unit="codec") as bar:
            wire = measure(streams, args.wire_seconds, args.fps, lambda _k: bar.update(1))
        timings["wire_s"] = _now() - t0
        attach_wire(rows, wire)
    timings["total_s"] = _now() - t_start
    result = {"meta": {**metadata(args, n, m), "timings_s": {k: round(v, 1) for k, v in timings.items()},
                       "loadavg_start": load_start, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
              "rows": rows, "compressors": compressor_table(rows), "headline": headline(rows),
              "wire": [{"split": k[0], "codec": k[1], **v} for k, v in wire.items()]}
    return result


def merge(old: dict, new: dict) -> dict:
    """``old`` with the latent rows (and wire entries) of the splits ``new`` measured replaced
    by ``new``'s: adding a split to a finished study without re-running it. The baselines and
    the metadata stay ``old``'s; ``meta.merged`` records what came later, and how."""
    splits = {r["split"] for r in new["rows"] if r.get("kind") == "latent"}
    rows = [r for r in old["rows"] if r.get("split") not in splits] + [
        r for r in new["rows"] if r.get("kind") == "latent"]
    wire = [w for w in old.get("wire", []) if w["split"] not in splits] + [
        w for w in new.get("wire", []) if w["split"] in splits]
    meta = {**old["meta"], "merged": [*old["meta"].get("merged", []),
                                      {"splits": sorted(splits), "command": new["meta"].get("command"),
                                       "date": new["meta"].get("date"), "timings_s": new["meta"].get("timings_s")}]}
    return {**old, "meta": meta, "rows": rows, "compressors": compressor_table(rows), "headline": headline(rows),
            "wire": wire}


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "study.md").write_text(markdown(result))
    from bench.plots import bytes_per_split, bytes_vs_accuracy
    bytes_vs_accuracy(result, out / "bytes_vs_accuracy.png")
    bytes_per_split(result, out / "bytes_per_split.png")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--images", type=int, default=10000, help="test images, spread over the set (default all)")
    p.add_argument("--splits", default="", help="comma-separated split ids (default: all)")
    p.add_argument("--codecs", default="", help=f"comma-separated codec names (default: all {len(ALL_CODECS)})")
    p.add_argument("--heads", default="float32,int8", help="float32 and/or int8 (default both)")
    p.add_argument("--jpeg", default=",".join(map(str, JPEG_QUALITIES)), help="JPEG qualities for the baselines")
    p.add_argument("--wire-seconds", type=float, default=3.0, help="per (split, codec); 0 skips the wire test")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--data", default=None, help="CIFAR-10 path (default: $SPLITRTC_DATA, which the Makefile sets)")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument("--merge", action="store_true",
                   help="replace only the rows of --splits in the existing --out/study.json (adding a split)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    result = run(args)
    if args.merge and (args.out / "study.json").is_file():
        result = merge(json.loads((args.out / "study.json").read_text()), result)
    write(result, args.out)
    h = result["headline"]
    print(f"full model top-1 {100 * h['full_top1']:.2f} %; fewest bytes within 1 pt: {h['smallest_within_1pt']}")
    print(f"wrote {args.out}/study.json, study.md, bytes_vs_accuracy.png, bytes_per_split.png "
          f"({result['meta']['timings_s']['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
