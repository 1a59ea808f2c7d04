"""What a box and the collector say to each other during zero-touch enrolment.

The agent (``lomsong probe enrol``) and the collector (``POST /api/v1/enrolments``) both import
these models, as they do ``wire.py`` for reports. A box describes itself so that a person at the
collector can recognise it and choose its uplinks; the description carries no secret of the
box's: no full IMSI (only its MCC-MNC prefix, which names the operator), no IMEI, no serial.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from lomsong.wire import COMMUNE_CODE, NAME_PATTERN, NO_NUL

ENROLMENT_KEY_PREFIX = "lse_"
POLL_SECRET_PREFIX = "lsp_"

Text = Annotated[str, Field(max_length=255, pattern=NO_NUL)]
ShortText = Annotated[str, Field(max_length=64, pattern=NO_NUL)]
#: the MCC-MNC an IMSI starts with (5 or 6 digits); never the subscriber's own digits
ImsiPrefix = Annotated[str, Field(pattern=r"^[0-9]{5,6}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interface(_Strict):
    """A network interface of the box and its addresses (``ip addr`` or ``/sys/class/net``)."""

    name: Annotated[str, Field(min_length=1, max_length=15, pattern=NO_NUL)]
    #: ether, loopback, none (a raw-IP modem interface), wlan …
    kind: ShortText = ""
    up: bool = False
    mac: ShortText | None = None
    addresses: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] = []


class Modem(_Strict):
    """A cellular modem ModemManager knows (``mmcli -m N -J``), without its IMEI."""

    index: ShortText
    manufacturer: Text | None = None
    model: Text | None = None
    #: the network interface its data travels by (its ``(net)`` port), e.g. ``wwan0``
    interface: Annotated[str, Field(max_length=15)] | None = None
    state: ShortText | None = None
    operator_name: Text | None = None
    #: MCC-MNC of the network it is registered on, e.g. ``45204``
    operator_code: Annotated[str, Field(pattern=r"^[0-9]{5,6}$")] | None = None
    imsi_prefix: ImsiPrefix | None = None
    access_technologies: Annotated[list[ShortText], Field(max_length=16)] = []


class ProbeDescription(_Strict):
    """What the box knows of itself when it asks to be enrolled."""

    machine_id: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[0-9A-Za-z-]+$")]
    hostname: Text
    agent_version: Annotated[str, Field(min_length=1, max_length=32, pattern=NO_NUL)]
    os: Text = ""
    boot_id: ShortText = ""
    interfaces: Annotated[list[Interface], Field(max_length=64)] = []
    modems: Annotated[list[Modem], Field(max_length=16)] = []


class EnrolRequest(_Strict):
    """``POST /api/v1/enrolments``, with the enrolment key as bearer token."""

    commune: Annotated[str, Field(pattern=COMMUNE_CODE)]
    description: ProbeDescription


class EnrolAnswer(_Strict):
    """The collector recorded the box as pending; it polls ``poll_url`` with ``poll_secret``."""

    id: int
    status: Literal["pending"]
    poll_url: str
    #: shown once; the collector keeps only its hash
    poll_secret: str
    reused_machine: list[str] = []


class UplinkBinding(_Strict):
    """An uplink as approved: its name, operator and the interface the box binds it to."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    operator: Annotated[str, Field(min_length=1, max_length=32)]
    interface: Annotated[str, Field(max_length=15)] | None = None


class PollAnswer(_Strict):
    """``GET /api/v1/enrolments/{id}`` with the poll secret: still pending, rejected, or the
    probe's id, uplinks and token (given once)."""

    id: int
    status: Literal["pending", "approved", "rejected"]
    probe_id: str | None = None
    token: str | None = None
    uplinks: list[UplinkBinding] = []
    reason: str | None = None
