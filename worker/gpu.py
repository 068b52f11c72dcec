"""GPU health: read every NVIDIA GPU through NVML and judge whether the rig may pull work.

This is the only module in garage that talks to NVML (`pynvml`, from the `nvidia-ml-py`
package in the `[worker]` extra). It owns two things:

- `NvmlProbe` reads each GPU into the wire model `GpuInfo`. It starts NVML lazily on the
  first read and stops it on `close()`. NVML calls block, so the worker uses
  `read_async()` / `check_async()`, which run them in a thread.
- `assess()` is a pure function from readings (plus what the probe saw go wrong) to a
  `Health`, against `GpuThresholds`. `critical` stops the worker pulling, `warn` is only
  reported.

How the probe treats NVML's failures:

    no pynvml, no driver, no GPU      -> [] and healthy: a CPU rig still works
    a field the device can't report   -> that field is None (NotSupported and kin)
    GPU lost, or any other NVML error -> that GPU is left out of the reading and an error
                                         names it; assess() makes that critical
    fewer GPUs than were seen before  -> critical in assess(), via expected_count

What the worker does with `Health` (stop pulling, report with every poll) belongs to the
worker daemon; how the CLI shows it belongs to the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from garage.contract import GpuInfo, Health, HealthState

__all__ = ["THROTTLE_REASON_NAMES", "GpuThresholds", "NvmlProbe", "assess"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_MIB = 1024 * 1024

# NVML renamed "clocks throttle reasons" to "clocks event reasons" (driver 535 / nvml 12.535);
# newer bindings keep both spellings, older ones only the first. The bits are the same.
THROTTLE_REASON_NAMES: dict[str, tuple[str, ...]] = {
    "gpu_idle": ("GpuIdle",),
    "applications_clocks_setting": ("ApplicationsClocksSetting", "UserDefinedClocks"),
    "sw_power_cap": ("SwPowerCap",),
    "hw_slowdown": ("HwSlowdown",),
    "sync_boost": ("SyncBoost",),
    "sw_thermal_slowdown": ("SwThermalSlowdown",),
    "hw_thermal_slowdown": ("HwThermalSlowdown",),
    "hw_power_brake_slowdown": ("HwPowerBrakeSlowdown",),
    "display_clock_setting": ("DisplayClockSetting",),
    "board_limit": ("BoardLimit",),
    "reliability": ("Reliability",),
}
"""Readable name of each clock throttle/event reason -> suffixes of its NVML constant."""

# The device has no driver or no NVIDIA GPU at all: a CPU rig, not a fault.
_ABSENT_ERRORS = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")
# The device cannot report this one field (old driver, consumer card, no permission).
_UNREADABLE_ERRORS = (
    "NVMLError_NotSupported",
    "NVMLError_FunctionNotFound",
    "NVMLError_NoPermission",
    "NVMLError_NoData",
)
# nvmlMemory_v2 is refused by drivers that predate it; fall back to v1.
_VERSION_ERRORS = ("NVMLError_ArgumentVersionMismatch", "NVMLError_InvalidArgument")

_NVML_FEATURE_ENABLED = 1  # nvmlEnableState_t; absent from some old bindings


class GpuThresholds(BaseModel):
    """Where a reading turns into a warning or into `critical` (stop pulling work).

    Defaults follow what NVIDIA's own tooling and datacenter operators act on; the reasons
    are in docs/gpu-health.md.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    temp_warn_c: float = Field(
        85.0,
        description="GPU core temperature (°C) at or above which the rig warns: above the "
        "83 °C temperature target of many GeForce cards, just under an H100's max operating "
        "temperature (about 87 °C).",
    )
    temp_critical_c: float = Field(
        90.0,
        description="GPU core temperature (°C) at or above which the worker stops pulling: "
        "about where hardware slowdown engages, a few degrees short of shutdown.",
    )
    memory_warn_pct: float | None = Field(
        None,
        ge=0,
        le=100,
        description="Memory used (% of total) at or above which the rig warns; None turns "
        "it off. Off by default: vLLM and friends reserve ~90% of memory on purpose.",
    )
    ecc_uncorrectable_critical: int | None = Field(
        1,
        ge=1,
        description="Volatile uncorrectable ECC errors (count since the last driver "
        "load) at or above which the worker stops pulling; None turns it off.",
    )
    warn_throttle_reasons: frozenset[str] = Field(
        frozenset(
            {"hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown"}
        ),
        description="Clock throttle reasons that warn: the hardware or driver is slowing the "
        "GPU for heat or power. sw_power_cap and gpu_idle are normal and not listed.",
    )

    @model_validator(mode="after")
    def _warn_below_critical(self) -> Self:
        if self.temp_warn_c > self.temp_critical_c:
            raise ValueError("temp_warn_c must not be above temp_critical_c")
        return self


def assess(
    gpus: Sequence[GpuInfo],
    thresholds: GpuThresholds,
    *,
    expected_count: int | None,
    errors: Sequence[str] = (),
) -> Health:
    """Judge a reading: `critical` stops the worker pulling, `warn` is only reported.

    `expected_count` is how many GPUs the rig had before (None: nothing to compare with);
    fewer now means a GPU was lost. `errors` are NVML failures from the same read (see
    `NvmlProbe.errors`); each one is critical. No GPUs and no errors is a healthy CPU rig.
    """
    critical: list[str] = list(errors)
    warn: list[str] = []
    if expected_count is not None and len(gpus) < expected_count:
        critical.append(f"only {len(gpus)} of {expected_count} GPUs readable: a GPU was lost")
    for gpu in gpus:
        label = _label(gpu)
        if gpu.temperature_c is not None:
            if gpu.temperature_c >= thresholds.temp_critical_c:
                critical.append(
                    f"{label} at {gpu.temperature_c:g}°C >= critical "
                    f"{thresholds.temp_critical_c:g}°C"
                )
            elif gpu.temperature_c >= thresholds.temp_warn_c:
                warn.append(
                    f"{label} at {gpu.temperature_c:g}°C >= warn {thresholds.temp_warn_c:g}°C"
                )
        ecc, ecc_limit = gpu.ecc_uncorrectable, thresholds.ecc_uncorrectable_critical
        if ecc is not None and ecc_limit is not None and ecc >= ecc_limit:
            critical.append(f"{label} has {ecc} uncorrectable ECC errors (volatile)")
        memory_pct = _memory_pct(gpu)
        if (
            thresholds.memory_warn_pct is not None
            and memory_pct is not None
            and memory_pct >= thresholds.memory_warn_pct
        ):
            warn.append(
                f"{label} memory {memory_pct:.1f}% used >= warn {thresholds.memory_warn_pct:g}%"
            )
        slowing = [r for r in gpu.throttle_reasons if r in thresholds.warn_throttle_reasons]
        if slowing:
            warn.append(f"{label} clocks slowed: {', '.join(slowing)}")
    if critical:
        return Health(state=HealthState.critical, reasons=critical + warn)
    if warn:
        return Health(state=HealthState.warn, reasons=warn)
    return Health()


class NvmlProbe:
    """Reads every GPU through NVML. One per worker; not a singleton.

    `nvml` is the NVML binding module (default: `pynvml`, imported on first use); tests
    pass a fake. Reads are serialised by a lock, so `read_async()` may be called from
    several tasks. After each read, `errors` names what went wrong in it and
    `expected_count` is the most GPUs seen since start, for `assess()`.
    """

    def __init__(self, nvml: ModuleType | Any | None = None) -> None:
        self._nvml = nvml
        self._lock = threading.RLock()
        self._started = False
        self._absent = False  # no driver / no GPU: stop asking
        self._expected_count: int | None = None
        self._names: dict[int, str] = {}  # index -> last name seen, to name a lost GPU
        self._errors: list[str] = []

    @property
    def expected_count(self) -> int | None:
        """The most GPUs seen since start; None until a GPU was seen."""
        return self._expected_count

    @property
    def errors(self) -> list[str]:
        """NVML failures from the last read, one human string each."""
        return list(self._errors)

    def read(self) -> list[GpuInfo]:
        """Read every GPU now. Never raises for NVML's sake; see the module docstring."""
        with self._lock:
            self._errors = []
            nvml = self._start()
            if nvml is None:
                return []
            try:
                count = nvml.nvmlDeviceGetCount()
            except nvml.NVMLError as exc:
                self._fail("NVML could not count GPUs", exc)
                return []
            gpus = []
            for index in range(count):
                gpu = self._read_one(nvml, index)
                if gpu is not None:
                    gpus.append(gpu)
                    self._names[index] = gpu.name
            if count:
                self._expected_count = max(self._expected_count or 0, count)
            return gpus

    def check(self, thresholds: GpuThresholds) -> tuple[list[GpuInfo], Health]:
        """Read every GPU and assess it: what the worker sends with each poll."""
        with self._lock:  # one lock span, so another thread's read can't swap the errors
            gpus = self.read()
            return gpus, assess(
                gpus, thresholds, expected_count=self._expected_count, errors=self._errors
            )

    async def read_async(self) -> list[GpuInfo]:
        """`read()` in a thread, so a slow driver never stalls the event loop."""
        return await asyncio.to_thread(self.read)

    async def check_async(self, thresholds: GpuThresholds) -> tuple[list[GpuInfo], Health]:
        """`check()` in a thread."""
        return await asyncio.to_thread(self.check, thresholds)

    def close(self) -> None:
        """Shut NVML down if this probe started it. A later read starts it again."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            nvml = self._nvml
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError as exc:
                logger.debug("gpu.nvml_shutdown_failed", extra={"error": str(exc)})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _start(self) -> Any | None:
        """The NVML module, initialised; None on a rig without NVIDIA GPUs."""
        if self._absent:
            return None
        if self._started:
            return self._nvml
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                logger.info("gpu.nvml_missing", extra={"hint": "install garage-ai[worker]"})
                self._absent = True
                return None
            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            if isinstance(exc, _classes(nvml, _ABSENT_ERRORS)):
                logger.info("gpu.no_driver", extra={"error": str(exc)})
                self._absent = True
            else:  # a broken driver (e.g. library/kernel mismatch after an upgrade)
                self._fail("NVML failed to start", exc)
            return None
        self._started = True
        return nvml

    def _read_one(self, nvml: Any, index: int) -> GpuInfo | None:
        """One GPU, or None (with an error recorded) if it is lost or NVML fails on it."""
        unreadable = _classes(nvml, _UNREADABLE_ERRORS)

        def field(call: Callable[..., _T], *args: Any) -> _T | None:
            try:
                return call(*args)
            except unreadable:
                return None

        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(nvml.nvmlDeviceGetName(handle))
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            memory = field(self._memory, nvml, handle)
            utilization = field(nvml.nvmlDeviceGetUtilizationRates, handle)
            temperature_c = field(self._temperature, nvml, handle)
            power_mw = field(nvml.nvmlDeviceGetPowerUsage, handle)
            power_limit_mw = field(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
            reasons = field(self._throttle_mask, nvml, handle)
            ecc = field(self._ecc_uncorrectable, nvml, handle)
        except nvml.NVMLError as exc:
            known = self._names.get(index)
            self._fail(f"GPU {index}" + (f" ({known})" if known else ""), exc)
            return None
        return GpuInfo(
            index=index,
            uuid=uuid,
            name=name,
            memory_used_mib=memory.used / _MIB if memory is not None else None,
            memory_total_mib=memory.total / _MIB if memory is not None else None,
            utilization_pct=utilization.gpu if utilization is not None else None,
            temperature_c=temperature_c,
            power_w=power_mw / 1000 if power_mw is not None else None,
            power_limit_w=power_limit_mw / 1000 if power_limit_mw is not None else None,
            throttle_reasons=_decode_reasons(nvml, reasons) if reasons is not None else [],
            ecc_uncorrectable=ecc,
        )

    @staticmethod
    def _memory(nvml: Any, handle: Any) -> Any:
        # v2 leaves the driver's reserved memory out of "used", as nvidia-smi does.
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None:
            retry = _classes(nvml, _UNREADABLE_ERRORS + _VERSION_ERRORS)
            try:
                return nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            except retry:
                pass
        return nvml.nvmlDeviceGetMemoryInfo(handle)

    @staticmethod
    def _temperature(nvml: Any, handle: Any) -> int:
        # nvmlDeviceGetTemperature is deprecated in favour of ...V (newer drivers only);
        # try the one every driver has first, and the other where bindings or driver lack it.
        missing = _classes(nvml, ("NVMLError_FunctionNotFound",))
        calls = [
            call
            for name in ("nvmlDeviceGetTemperature", "nvmlDeviceGetTemperatureV")
            if (call := getattr(nvml, name, None)) is not None
        ]
        for call in calls[:-1]:
            try:
                return call(handle, nvml.NVML_TEMPERATURE_GPU)
            except missing:
                pass
        return calls[-1](handle, nvml.NVML_TEMPERATURE_GPU)

    @staticmethod
    def _throttle_mask(nvml: Any, handle: Any) -> int:
        current = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if current is not None:
            try:
                return current(handle)
            except _classes(nvml, ("NVMLError_FunctionNotFound",)):
                pass  # bindings newer than the driver: use the old entry point
        return nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)

    @staticmethod
    def _ecc_uncorrectable(nvml: Any, handle: Any) -> int | None:
        current, _pending = nvml.nvmlDeviceGetEccMode(handle)
        if current != getattr(nvml, "NVML_FEATURE_ENABLED", _NVML_FEATURE_ENABLED):
            return None  # ECC supported but switched off: no count to trust
        return nvml.nvmlDeviceGetTotalEccErrors(
            handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
        )

    def _fail(self, what: str, exc: Exception) -> None:
        reason = f"{what}: NVML error: {exc}"
        self._errors.append(reason)
        logger.warning("gpu.nvml_error", extra={"what": what, "error": str(exc)})


def _decode_reasons(nvml: Any, mask: int) -> list[str]:
    """Readable names for the set bits of a clock throttle/event reason mask."""
    names = []
    known = 0
    for name, suffixes in THROTTLE_REASON_NAMES.items():
        bit = _reason_bit(nvml, suffixes)
        if bit:
            known |= bit
            if mask & bit:
                names.append(name)
    if unknown := mask & ~known:
        names.append(f"other_{unknown:#x}")
    return names


def _reason_bit(nvml: Any, suffixes: tuple[str, ...]) -> int:
    for suffix in suffixes:
        for prefix in ("nvmlClocksEventReason", "nvmlClocksThrottleReason"):
            bit = getattr(nvml, prefix + suffix, None)
            if bit is not None:
                return bit
    return 0


def _classes(nvml: Any, names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    """The NVML exception classes of these names that this binding defines."""
    return tuple(cls for name in names if (cls := getattr(nvml, name, None)) is not None)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _label(gpu: GpuInfo) -> str:
    return f"GPU {gpu.index} ({gpu.name})"


def _memory_pct(gpu: GpuInfo) -> float | None:
    if gpu.memory_used_mib is None or not gpu.memory_total_mib:
        return None
    return 100 * gpu.memory_used_mib / gpu.memory_total_mib
