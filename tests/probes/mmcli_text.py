"""The ``mmcli -m N -J`` document equivalent to a plain-text ``mmcli -m N`` capture.

The agent always runs ``mmcli -J`` (every ModemManager since 1.10 prints JSON), so the ``modem``
check parses JSON only and never meets this text. Two real states exist only as text captures
(a missing SIM, an unregistered modem): the tests carry their fields over to the JSON keys that
mmcli prints for the same fields (the field table of ``cli/mmcli-output.c``) and parse that.
Nothing is added: a field the capture does not show is absent from the document.
"""

from __future__ import annotations

from typing import Any

# (section, label) → (JSON path under "modem", kind): "text"; "list" (comma-separated in the
# text, a list in JSON); "one-list" (one string in a list, as capabilities); "list-lines" (one
# entry per line); "quality" (the signal-quality object).
_FIELDS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("General", "dbus path"): (("dbus-path",), "text"),
    ("General", "path"): (("dbus-path",), "text"),
    ("General", "device id"): (("generic", "device-identifier"), "text"),
    ("Hardware", "manufacturer"): (("generic", "manufacturer"), "text"),
    ("Hardware", "model"): (("generic", "model"), "text"),
    ("Hardware", "firmware revision"): (("generic", "revision"), "text"),
    ("Hardware", "h/w revision"): (("generic", "hardware-revision"), "text"),
    ("Hardware", "supported"): (("generic", "supported-capabilities"), "one-list"),
    ("Hardware", "current"): (("generic", "current-capabilities"), "one-list"),
    ("Hardware", "equipment id"): (("generic", "equipment-identifier"), "text"),
    ("System", "device"): (("generic", "device"), "text"),
    ("System", "drivers"): (("generic", "drivers"), "list"),
    ("System", "plugin"): (("generic", "plugin"), "text"),
    ("System", "primary port"): (("generic", "primary-port"), "text"),
    ("System", "ports"): (("generic", "ports"), "list"),
    ("Status", "unlock required"): (("generic", "unlock-required"), "text"),
    ("Status", "unlock retries"): (("generic", "unlock-retries"), "list"),
    ("Status", "state"): (("generic", "state"), "text"),
    ("Status", "failed reason"): (("generic", "state-failed-reason"), "text"),
    ("Status", "power state"): (("generic", "power-state"), "text"),
    ("Status", "access tech"): (("generic", "access-technologies"), "list"),
    ("Status", "signal quality"): (("generic", "signal-quality"), "quality"),
    ("Modes", "supported"): (("generic", "supported-modes"), "list-lines"),
    ("Modes", "current"): (("generic", "current-modes"), "text"),
    ("3GPP", "imei"): (("3gpp", "imei"), "text"),
    ("3GPP", "enabled locks"): (("3gpp", "enabled-locks"), "list"),
    ("3GPP", "operator id"): (("3gpp", "operator-code"), "text"),
    ("3GPP", "operator name"): (("3gpp", "operator-name"), "text"),
    ("3GPP", "registration"): (("3gpp", "registration-state"), "text"),
}


def modem_json_from_text(text: str) -> dict[str, Any]:
    """The ``{"modem": …}`` document for the fields a plain-text capture shows."""
    fields: list[tuple[str, str, list[str]]] = []  # (section, label, values one per line)
    section = ""
    for line in text.splitlines():
        if "|" not in line:
            continue  # the prompt, separators, and the poster's "..." cuts
        head, _, body = line.partition("|")
        section = head.strip() or section
        label, sep, value = body.partition(": ")
        if sep and label.strip():
            fields.append((section, label.strip(), [value.strip()]))
        elif fields and body.strip():
            fields[-1][2].append(body.strip())  # a further value of a multi-line field
    doc: dict[str, Any] = {}
    for section, label, values in fields:
        path, kind = _FIELDS[(section, label)]
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = _json_value(kind, values)
    return {"modem": doc}


def _json_value(kind: str, values: list[str]) -> Any:
    if kind == "text":
        return values[0]
    if kind in ("one-list", "list-lines"):
        return values
    if kind == "list":
        return [part.strip() for value in values for part in value.split(",")]
    # "0% (cached)" → value 0, not recent (mmcli prints "cached" when recent is no)
    percent, _, rest = values[0].partition("%")
    return {"recent": "no" if "cached" in rest else "yes", "value": percent.strip()}
