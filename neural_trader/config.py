"""Config plumbing every study shares: strict sections, names, errors that name their key, overrides.

Each study (a wing: `synthetic`, `markets`, `warmups`, `sweep`) declares its own
sections from `Strict`; `neural_trader.params` assembles them into the whole of
params.yaml. Anything unknown, mistyped or out of range raises `ConfigError`,
naming the key path (`train.lr`) and what is allowed, before any work starts.
This module never touches a file.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from neural_trader.memory import parse_bytes

__all__ = ["ConfigError", "Strict", "check_names", "SeedsConfig", "RuntimeConfig", "describe_error",
           "suggest_key", "apply_overrides", "merge_params"]


class ConfigError(ValueError):
    """A parameter is unknown, mistyped or out of range."""


class Strict(BaseModel):
    """A config section: unknown keys fail, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_names(v: dict[str, Any], what: str, required: bool = True) -> dict[str, Any]:
    """Names that become folders and DVC stage names: letters, digits and '_' only (and at least one)."""
    if required and not v:
        raise ValueError(f"at least one {what} is required")
    for name in v:
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise ValueError(f"{what} name {name!r} must be letters, digits and '_' only")
    return v


class SeedsConfig(Strict):
    count: int = Field(16, ge=2, le=4096, description="independent replicas per variant (batched)")
    base: int = Field(0, ge=0, lt=2**63, description="root of every generator seed")


class RuntimeConfig(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    task_runner: Literal["threads", "dask", "sequential"] = "threads"
    max_workers: int = Field(2, ge=1, le=256, description="stage bodies computing at once (threads), or local Dask worker processes")
    dask_address: str | None = Field(None, description="scheduler address for task_runner=dask; None starts a local cluster")
    torch_threads: int = Field(1, ge=1, le=256, description="intra-op threads per process (1 keeps CPU numbers identical)")
    progress: Literal["auto"] | bool = Field(
        "auto", description="a bar per training: auto (when stderr is a terminal), true or false; keys no stage")
    seed_shards: int = Field(1, ge=1, le=256, description="train each cell's seeds as this many shards (tasks), "
                             "joined into the bytes of one batch; the Prefect flow's scheduling only")
    max_batch_bytes: int | None = Field(
        None, description="memory for one training batch, in bytes or with a unit ('2GiB'); a cell trains its "
        "replicas in blocks of 16 or more that fit. None: half the memory free when a cell starts, "
        "shared by max_workers")

    @field_validator("progress", mode="before")
    @classmethod
    def _progress(cls, v: Any) -> Any:
        if v == "auto" or isinstance(v, bool):
            return v
        raise ValueError(f"must be auto, true or false, got {v!r}")

    @field_validator("max_batch_bytes", mode="before")
    @classmethod
    def _bytes(cls, v: Any) -> int | None:
        return None if v is None else parse_bytes(v)


def describe_error(exc: ValidationError, root: type[BaseModel], kinds: dict[str, tuple[str, ...]]) -> str:
    """One line per error of `root`, each naming its key path; `kinds`: section -> the source kinds it allows."""
    tags = {t for ks in kinds.values() for t in ks}
    lines = []
    for err in exc.errors():
        # discriminated unions put the tag in the location ("ar1"); drop it
        loc = [str(p) for p in err["loc"] if p not in tags]
        key = ".".join(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            tag = (err.get("ctx") or {}).get("tag")
            got = f"unknown source kind {tag!r}" if err["type"] == "union_tag_invalid" else "missing source kind"
            allowed = kinds.get(loc[0], ()) if loc else ()
            lines.append(f"{key}.kind: {got} (allowed: {', '.join(allowed)})")
            continue
        if not key or msg.startswith(f"{key}."):  # cross-field checks name their own keys
            lines.append(msg)
            continue
        if err["type"] == "extra_forbidden":
            # the leaf against its siblings: a shared prefix would make every sibling look close
            known = _known_keys(root, [str(p) for p in err["loc"][:-1]])
            msg = f"unknown key{suggest_key(loc[-1], known, prefix=key.removesuffix(loc[-1]))}"
        elif "input" in err and err["type"] != "missing" and not err["type"].startswith("value_error"):
            msg = f"{msg}, got {err['input']!r}"
        if (hint := _field_hint(root, loc)) and err["type"] != "extra_forbidden":
            msg = f"{msg} (allowed: {hint})"
        elif loc and loc[-1] == "rho":
            msg = f"{msg} (allowed: > -1 and < 1)"
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


def suggest_key(key: str, known: list[str], prefix: str = "") -> str:
    """' (did you mean <prefix><the closest of `known`>?)', or '' when none is close."""
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _known_keys(root: type[BaseModel], loc: list[str]) -> list[str]:
    """The keys of the section at `loc` (pydantic's location: a union's tag names its member); [] if not a section."""
    models: list[Any] = [root]
    for part in loc:
        nxt: list[Any] = []
        for model in models:
            if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
                nxt += _members(model.model_fields[part].annotation)
            elif isinstance(model, type) and issubclass(model, BaseModel):  # a union member, picked by its tag
                kind = model.model_fields.get("kind")
                nxt += [model] if kind is not None and kind.default == part else []
            elif typing.get_origin(model) is dict:  # the key is a user-chosen name
                nxt += _members(typing.get_args(model)[1])
        models = nxt
    picked = [m for m in models if isinstance(m, type) and issubclass(m, BaseModel)]
    return list(picked[0].model_fields) if len(picked) == 1 else []


def _members(annotation: Any) -> list[Any]:
    """The models and dicts an annotation may hold: Annotated, unions and Optional unwrapped."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _members(a)]
    return [annotation]


def _field_hint(root: type[BaseModel], loc: list[str]) -> str | None:
    """The allowed range of the field at `loc`, from its constraints, e.g. '> 0 and <= 10'."""
    model: Any = root
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields and part in fields:
            info = fields[part]
            model = info.annotation
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]  # the key is a user-chosen name
            if typing.get_origin(model) is typing.Annotated:  # a union of regimes
                model = None
            info = None
        else:
            return None
    if info is None:
        return None
    ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    bounds = [
        f"{sym} {getattr(m, op)}" for m in info.metadata for op, sym in ops.items() if hasattr(m, op)
    ]
    return " and ".join(bounds) or None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with `key.path=value` overrides applied.

    Values are parsed as JSON when they parse (numbers, true/false, null, lists,
    objects) and kept as strings otherwise.
    """
    out = json.loads(json.dumps(raw or {}))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key.path=value")
        path, text = item.split("=", 1)
        parts = path.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item}: empty key in {path!r}")
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item}: {part!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def merge_params(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on `base`, mappings merged key by key, anything else (an empty mapping too: `{}` clears) replaced."""
    out = dict(base)
    for key, value in over.items():
        merge = isinstance(value, dict) and value and isinstance(out.get(key), dict)
        out[key] = merge_params(out[key], value) if merge else value
    return out
