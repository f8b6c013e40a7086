"""Cut any ONNX model at one tensor into a head (sender) and a tail (receiver).

The command line, ``python -m splitcore.offline.onnxcut {list,cut,verify} --help``; the paragraph
above is also its ``--help`` description.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict

import onnx

from .costs import cost
from .cutting import candidate_cuts, cut
from .errors import OnnxCutError
from .graph import load_model
from .verifying import verify

_EPILOG = """\
subcommands:
  list    show every tensor the model can be cut at, with its size on the wire and the
          multiply-adds (MACs) the head would run:
            python -m splitcore.offline.onnxcut list models/resnet.onnx
  cut     write head and tail models for one cut tensor, optionally renaming it:
            python -m splitcore.offline.onnxcut cut models/resnet.onnx /layer2/Relu_output_0 \\
                --head head.onnx --tail tail.onnx --rename latent
  verify  check that head->tail gives the same outputs as the full model (exit 1 if not):
            python -m splitcore.offline.onnxcut verify models/resnet.onnx head.onnx tail.onnx

exit codes: 0 ok, 1 verify found a difference, 2 bad input (file, tensor name, ...)
"""


def _parser() -> argparse.ArgumentParser:
    """Argument parser; every subcommand carries its own example in --help."""
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m splitcore.offline.onnxcut", formatter_class=fmt,
                                 description=__doc__.split("\n\n")[0], epilog=_EPILOG)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("list", help="list valid cut tensors", formatter_class=fmt,
                       epilog="example: python -m splitcore.offline.onnxcut list model.onnx --json")
    p.add_argument("model", help="full model (.onnx)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = sub.add_parser("cut", help="write head/tail models", formatter_class=fmt,
                       epilog="example: python -m splitcore.offline.onnxcut cut model.onnx "
                              "/relu2/Relu_output_0 --head h.onnx --tail t.onnx --rename latent")
    p.add_argument("model", help="full model (.onnx)")
    p.add_argument("tensor", help="name of the tensor to cut at (see `list`)")
    p.add_argument("--head", required=True, help="output path of the head model")
    p.add_argument("--tail", required=True, help="output path of the tail model")
    p.add_argument("--rename", help="new name for the cut tensor in both halves, e.g. latent")
    p = sub.add_parser("verify", help="compare head->tail with the full model",
                       formatter_class=fmt,
                       epilog="example: python -m splitcore.offline.onnxcut verify model.onnx "
                              "h.onnx t.onnx --samples 16\n\n"
                              "At --opt-level all, ORT may fuse or re-layout ops across the cut\n"
                              "in the full model (Conv+BatchNormalization, MatMul+Add, NCHWc)\n"
                              "but not in the halves, giving tiny differences; --opt-level\n"
                              "disable tells whether the cut itself is exact.")
    for name in ("full", "head", "tail"):
        p.add_argument(name, help=f"{name} model (.onnx)")
    p.add_argument("--samples", type=int, default=8, help="random inputs to try (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="max |diff| accepted when not bit-exact (default 0: bit-exact only)")
    p.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (default 1)")
    p.add_argument("--opt-level", default="all",
                   choices=["disable", "basic", "extended", "all"],
                   help="ORT graph optimization level for all three models (default all)")
    return ap


def _human(n: int | None, unit: str, base: int) -> str:
    """Compact size: 1536 -> '1.5 Ki' style, so the table stays narrow."""
    if n is None:
        return "?"
    prefixes = ["", "K", "M", "G", "T"]
    value, k = float(n), 0
    while value >= base and k < len(prefixes) - 1:
        value, k = value / base, k + 1
    suffix = prefixes[k] + ("i" if base == 1024 and k else "")
    return f"{value:.0f} {suffix}{unit}" if k == 0 else f"{value:.1f} {suffix}{unit}"


def _shape_str(shape: tuple[int | str | None, ...] | None) -> str:
    """[1, 16, 'N'] -> '1x16xN'; unknown dims print as '?'."""
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


def _cmd_list(args: argparse.Namespace) -> int:
    """Print the candidate table (or JSON lines) for one model."""
    model = load_model(args.model)
    cuts = candidate_cuts(model)
    if args.json:
        for c in cuts:
            print(json.dumps(asdict(c)))
        return 0
    total = cost(model)
    print(f"{args.model}: {len(model.graph.node)} nodes, {_human(total.params, '', 1000)} "
          f"params, {_human(total.macs, '', 1000)} MACs, {len(cuts)} valid cuts")
    rows = [(str(c.index), c.name, c.op_type, _shape_str(c.shape),
             _human(c.float32_bytes, "B", 1024), _human(c.head_macs, "", 1000)) for c in cuts]
    header = ("idx", "tensor", "op", "shape", "f32 bytes", "head MACs")
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    right = (True, False, False, False, True, True)
    for r in [header, *rows]:
        print("  ".join(v.rjust(w) if a else v.ljust(w) for v, w, a in zip(r, widths, right, strict=True)))
    return 0


def _cmd_cut(args: argparse.Namespace) -> int:
    """Cut and save both halves, then report their sizes."""
    model = load_model(args.model)
    head, tail = cut(model, args.tensor, rename=args.rename)
    for part, path in ((head, args.head), (tail, args.tail)):
        try:
            onnx.save(part, path)
        except OSError as exc:
            raise OnnxCutError(f"cannot write {path}: {exc.strerror or exc}") from exc
        c = cost(part)
        print(f"wrote {path}: {len(part.graph.node)} nodes, {c.params} params, {c.macs} MACs")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 when head->tail matches the full model within tolerance, else 1."""
    full, head, tail = (load_model(p) for p in (args.full, args.head, args.tail))
    res = verify(full, head, tail, samples=args.samples, seed=args.seed,
                 tolerance=args.tolerance, threads=args.threads, opt_level=args.opt_level)
    verdict = "bit-exact" if res.bit_exact else (
        "NOT bit-exact, within tolerance" if res.ok else "NOT equal")
    print(f"{res.samples} samples: max |diff| = {res.max_abs_diff:.3g}: {verdict}")
    return 0 if res.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; user errors become one line on stderr and exit code 2."""
    args = _parser().parse_args(argv)
    handler = {"list": _cmd_list, "cut": _cmd_cut, "verify": _cmd_verify}[args.cmd]
    try:
        return handler(args)
    except OnnxCutError as exc:
        print(f"onnxcut: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `list ... | head` closed stdout: not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
