"""The README's configuration reference names every setting, with its environment variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from lomsong.config.collector import CollectorSettings
from lomsong.config.probe import ProbeSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out.extend(leaves(kind, f"{prefix}{name}."))
        else:
            out.append(prefix + name)
    return out


def test_every_collector_setting_is_in_the_reference_with_its_variable() -> None:
    missing = []
    for dotted in leaves(CollectorSettings):
        variable = "LOMSONG_" + dotted.upper().replace(".", "__")
        row = f"| `{dotted}` | `{variable}` |"
        if row not in README:
            missing.append(row)
    assert not missing, f"README configuration reference lacks: {missing}"


def test_every_probe_setting_is_in_the_probe_table() -> None:
    missing = [
        dotted
        for dotted in leaves(ProbeSettings)
        if not any(
            form in README
            for form in (f"`{dotted}`", f"`{dotted.split('.')[-1]}`", f"`[[{dotted}]]`")
        )
    ]
    assert not missing, f"README probe settings lack: {missing}"
