"""``mheads predict``'s records (see :mod:`mheads.infer.predict`) as text, JSON or CSV. A record with an
``error`` (an image that could not be read) keeps its place in every format: a text line ``PATH: error:
...``, the JSON record as it is, a CSV row with only its path and error. JSON puts one key per line and each
list of numbers (a hypothesis, a mask row, a probability vector) on one line."""

from __future__ import annotations

import csv
import io
import json

__all__ = ["format_predictions", "failed"]


def failed(records: list[dict]) -> list[dict]:
    """The records of images that could not be read."""
    return [r for r in records if "error" in r]


def _csv(records: list[dict]) -> str:
    good = [r for r in records if "error" not in r]
    members = len(good[0]["members"]) if good else 0
    tops = len(good[0]["top"]) if good else 0
    oracle = any("oracle" in r for r in good)  # rows with targets: the first member that is right
    head = (
        ["path"]
        + [f"top{k + 1}_{x}" for k in range(tops) for x in ("class", "prob")]
        + [f"member{m}_{x}" for m in range(members) for x in ("class", "prob")]
        + ["entropy", "aleatoric", "epistemic", "disagreement", "temperature", "ood", "ood_score"]
        + (["target", "oracle_member", "oracle_correct"] if oracle else [])
        + ["error"]
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in records:
        if "error" in r:
            w.writerow([r["path"]] + [""] * (len(head) - 2) + [r["error"]])
            continue
        ood = r["ood"]
        w.writerow(
            [r["path"]]
            + [v for t in r["top"] for v in (t["class"], t["prob"])]
            + [v for t in r["members"] for v in (t["class"], t["prob"])]
            + [
                r["entropy"],
                r["aleatoric"],
                r["epistemic"],
                r["disagreement"],
                r["temperature"],
                "" if ood is None else int(ood["flag"]),
                "" if ood is None else ood["score"],
            ]
            + (_oracle_cells(r) if oracle else [])
            + [""]
        )
    return buf.getvalue().rstrip("\n")


def _oracle_cells(r: dict) -> list:
    """A classification record's target, oracle member (empty when no member is right) and 0/1 correct."""
    if "oracle" not in r:
        return ["", "", ""]
    member = r["oracle"]["member"]
    return [r["target"], "" if member is None else member, int(r["oracle"]["correct"])]


def _line(r: dict) -> str:
    if "error" in r:
        return f"{r['path']}: error: {r['error']}"
    top = ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in r["top"])
    mem = ", ".join(f"{t['class']} {100 * t['prob']:.0f}%" for t in r["members"])
    line = (
        f"{r['path']}: {top} | members: {mem} | entropy {r['entropy']:.3f} "
        f"(aleatoric {r['aleatoric']:.3f}, epistemic {r['epistemic']:.3f}), "
        f"disagreement {r['disagreement']:.2f}"
    )
    if "proposals" in r:
        line += " | proposals: " + ", ".join(
            f"{t['class']} ({100 * t['prob']:.0f}%, m{t['member']})" for t in r["proposals"]
        )
    if "oracle" in r:
        member = r["oracle"]["member"]
        line += f" | target {r['target']}: " + ("no member right" if member is None else f"m{member} right")
    ood = r.get("ood")
    if ood is not None:
        side = ">" if ood["flag"] else "<="
        line += (
            f" | OOD: {'yes' if ood['flag'] else 'no'} ({ood['criterion']} {ood['score']:.4f} {side} "
            f"{ood['threshold']:.4f})"
        )
    return line


def _flat(value, prefix: str, into: dict) -> dict:
    """A task record's nested values as ``a_b_0``-named columns."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(v, f"{prefix}_{k}" if prefix else str(k), into)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flat(v, f"{prefix}_{i}", into)
    else:
        into[prefix] = value
    return into


def _task_csv(records: list[dict]) -> str:
    rows = [_flat(r, "", {}) for r in records]
    head = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for row in rows:
        w.writerow(["" if row.get(k) is None else row[k] for k in head])
    return buf.getvalue().rstrip("\n")


def _json(value, depth: int = 0) -> str:
    """``value`` as indented JSON (``json.loads`` reads back what ``json.dumps`` would write), except that a
    list holding no list or dict stays on one line: a 12x16 mask takes 14 lines, not 218."""
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict) and value:
        items = (f"{inner}{json.dumps(_key(k))}: {_json(v, depth + 1)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)) and any(isinstance(v, (list, tuple, dict)) for v in value):
        return "[\n" + ",\n".join(f"{inner}{_json(v, depth + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value)


def _key(k) -> str:
    """A dict key as ``json.dumps`` writes it: a string, or a number, bool or None in its JSON spelling."""
    return k if isinstance(k, str) else json.dumps(k)


def format_predictions(records: list[dict], fmt: str = "text") -> str:
    """``text`` (one line per image), ``json`` (a list) or ``csv`` (one row per image). A task's records
    (:mod:`mheads.infer.predict_task`): one JSON object per line as text, their nested values as columns
    (``members_0_mean_0``, ...) in CSV."""
    if fmt == "json":
        return _json(records)
    if records and "task" in records[0]:
        if fmt == "csv":
            return _task_csv(records)
        return "\n".join(json.dumps(r) for r in records)
    if fmt == "csv":
        return _csv(records)
    return "\n".join(_line(r) for r in records)
