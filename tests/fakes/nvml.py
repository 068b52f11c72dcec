"""A fake `pynvml`: the parts NvmlProbe calls, over devices described in NVML's raw units
(bytes, milliwatts, °C), with the NVMLError_* class tree and the clock-reason constants.
Set `FakeGpu.fail[call]` to make one NVML call raise for one device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB


class NVMLError(Exception):
    message = "NVML error"

    def __str__(self) -> str:
        return self.message


class NotSupported(NVMLError):
    message = "Not Supported"


class FunctionNotFound(NVMLError):
    message = "Function Not Found"


class ArgumentVersionMismatch(NVMLError):
    message = "Argument Version Mismatch"


class GpuIsLost(NVMLError):
    message = "GPU is lost"


class Unknown(NVMLError):
    message = "Unknown Error"


class LibraryNotFound(NVMLError):
    message = "NVML Shared Library Not Found"


class DriverNotLoaded(NVMLError):
    message = "Driver Not Loaded"


class LibRmVersionMismatch(NVMLError):
    message = "RM has detected an NVML/RM version mismatch."


REASON_BITS = {
    "GpuIdle": 0x1,
    "ApplicationsClocksSetting": 0x2,
    "SwPowerCap": 0x4,
    "HwSlowdown": 0x8,
    "SyncBoost": 0x10,
    "SwThermalSlowdown": 0x20,
    "HwThermalSlowdown": 0x40,
    "HwPowerBrakeSlowdown": 0x80,
    "DisplayClockSetting": 0x100,
}


@dataclass
class FakeGpu:
    """One device in NVML's raw units."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    memory_used_b: int = 1 * GIB
    memory_reserved_b: int = 512 * MIB  # v1 counts this as used, v2 does not
    memory_total_b: int = 80 * GIB
    utilization_pct: int = 0
    temperature_c: int = 35
    power_mw: int = 70_000
    power_limit_mw: int = 700_000
    reasons: int = 0
    ecc_enabled: bool = True
    ecc_uncorrectable: int = 0
    fail: dict[str, NVMLError] = field(default_factory=dict)  # NVML function -> its error


class FakeNvml:
    """The subset of `pynvml` that NvmlProbe calls, over a list of FakeGpu."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NotSupported
    NVMLError_FunctionNotFound = FunctionNotFound
    NVMLError_ArgumentVersionMismatch = ArgumentVersionMismatch
    NVMLError_GpuIsLost = GpuIsLost
    NVMLError_Unknown = Unknown
    NVMLError_LibraryNotFound = LibraryNotFound
    NVMLError_DriverNotLoaded = DriverNotLoaded
    NVMLError_LibRmVersionMismatch = LibRmVersionMismatch
    NVML_TEMPERATURE_GPU = 0
    NVML_VOLATILE_ECC = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_FEATURE_ENABLED = 1
    nvmlMemory_v2 = 0x02000028

    def __init__(self, gpus: list[FakeGpu], *, event_names: bool = True) -> None:
        self.gpus = gpus
        self.init_error: NVMLError | None = None
        self.count_error: NVMLError | None = None
        self.inits = 0
        self.shutdowns = 0
        prefixes = ["nvmlClocksThrottleReason"] + (["nvmlClocksEventReason"] if event_names else [])
        for prefix in prefixes:
            for suffix, bit in REASON_BITS.items():
                setattr(self, prefix + suffix, bit)
        if event_names:
            self.nvmlDeviceGetCurrentClocksEventReasons = self._reasons

    def _gpu(self, handle: int, call: str) -> FakeGpu:
        gpu = self.gpus[handle]
        if call in gpu.fail:
            raise gpu.fail[call]
        return gpu

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        if self.count_error is not None:
            raise self.count_error
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._gpu(index, "nvmlDeviceGetHandleByIndex")
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:  # old bindings return bytes
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid.encode()

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> Any:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        if version is not None:
            gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo_v2")
            return SimpleNamespace(used=gpu.memory_used_b, total=gpu.memory_total_b)
        used = gpu.memory_used_b + gpu.memory_reserved_b
        return SimpleNamespace(used=used, total=gpu.memory_total_b)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu.utilization_pct, memory=0)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._gpu(handle, "nvmlDeviceGetTemperature").temperature_c

    def nvmlDeviceGetTemperatureV(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._gpu(handle, "nvmlDeviceGetTemperatureV").temperature_c

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def _reasons(self, handle: int) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: int) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").reasons

    def nvmlDeviceGetEccMode(self, handle: int) -> list[int]:
        enabled = int(self._gpu(handle, "nvmlDeviceGetEccMode").ecc_enabled)
        return [enabled, enabled]

    def nvmlDeviceGetTotalEccErrors(self, handle: int, error_type: int, counter: int) -> int:
        assert (error_type, counter) == (1, 0), "uncorrectable, volatile"
        return self._gpu(handle, "nvmlDeviceGetTotalEccErrors").ecc_uncorrectable
