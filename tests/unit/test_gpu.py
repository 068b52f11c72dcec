"""GPU health: NvmlProbe driven through a fake NVML module, and assess() on plain readings.

The fake mimics the parts of `pynvml` the probe uses: raw units (bytes, milliwatts, °C),
the NVMLError_* class tree and the clock-reason bit constants.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from garage.contract import GpuInfo, Health, HealthState
from garage.worker.gpu import GpuThresholds, NvmlProbe, assess
from tests.fakes.nvml import (
    GIB,
    MIB,
    REASON_BITS,
    ArgumentVersionMismatch,
    DriverNotLoaded,
    FakeGpu,
    FakeNvml,
    FunctionNotFound,
    GpuIsLost,
    LibraryNotFound,
    LibRmVersionMismatch,
    NotSupported,
    NVMLError,
    Unknown,
)


def h100(index: int, **overrides: Any) -> FakeGpu:
    return FakeGpu(uuid=f"GPU-{index:08d}-aaaa-bbbb-cccc-dddddddddddd", **overrides)


def check(probe: NvmlProbe, thresholds: GpuThresholds | None = None) -> Health:
    return probe.check(thresholds or GpuThresholds())[1]


def gpu_info(**overrides: Any) -> GpuInfo:
    values: dict[str, Any] = {
        "index": 0,
        "uuid": "GPU-0",
        "name": "NVIDIA H100 80GB HBM3",
        "memory_used_mib": 1024.0,
        "memory_total_mib": 81559.0,
        "utilization_pct": 0.0,
        "temperature_c": 40.0,
        "power_w": 70.0,
        "power_limit_w": 700.0,
        "ecc_uncorrectable": 0,
    }
    return GpuInfo(**(values | overrides))


# --- reading -----------------------------------------------------------------------------


@pytest.mark.parametrize("error", [LibraryNotFound(), DriverNotLoaded()])
def test_no_driver_reads_nothing_and_is_healthy(error: NVMLError) -> None:
    nvml = FakeNvml([h100(0)])
    nvml.init_error = error
    probe = NvmlProbe(nvml)

    assert probe.check(GpuThresholds()) == ([], Health(state=HealthState.ok, reasons=[]))
    assert probe.read() == []
    assert probe.expected_count is None
    assert probe.errors == []
    nvml.init_error = None
    assert probe.read() == [], "a rig without a driver stops asking NVML"
    assert nvml.inits == 0


def test_no_gpus_reads_nothing_and_is_healthy() -> None:
    probe = NvmlProbe(FakeNvml([]))

    assert probe.read() == []
    assert probe.expected_count is None
    assert check(probe) == Health(state=HealthState.ok, reasons=[])


def test_two_gpus_read_with_units_converted() -> None:
    nvml = FakeNvml(
        [
            h100(0),
            h100(
                1,
                name="NVIDIA GeForce RTX 4090",
                memory_used_b=20 * GIB + 512 * MIB,
                memory_total_b=24 * GIB,
                utilization_pct=97,
                temperature_c=71,
                power_mw=431_250,
                power_limit_mw=450_000,
                reasons=REASON_BITS["SwPowerCap"],
                ecc_enabled=False,
            ),
        ]
    )
    probe = NvmlProbe(nvml)

    gpus = probe.read()

    assert gpus == [
        GpuInfo(
            index=0,
            uuid="GPU-00000000-aaaa-bbbb-cccc-dddddddddddd",
            name="NVIDIA H100 80GB HBM3",
            memory_used_mib=1024.0,
            memory_total_mib=81920.0,
            utilization_pct=0.0,
            temperature_c=35.0,
            power_w=70.0,
            power_limit_w=700.0,
            throttle_reasons=[],
            ecc_uncorrectable=0,
        ),
        GpuInfo(
            index=1,
            uuid="GPU-00000001-aaaa-bbbb-cccc-dddddddddddd",
            name="NVIDIA GeForce RTX 4090",
            memory_used_mib=20992.0,
            memory_total_mib=24576.0,
            utilization_pct=97.0,
            temperature_c=71.0,
            power_w=431.25,
            power_limit_w=450.0,
            throttle_reasons=["sw_power_cap"],
            ecc_uncorrectable=None,  # ECC switched off: no count
        ),
    ]
    assert probe.expected_count == 2
    assert check(probe) == Health(state=HealthState.ok, reasons=[])
    assert nvml.inits == 1, "NVML is started once, not per read"


def test_memory_falls_back_to_v1_where_driver_refuses_v2() -> None:
    gpu = h100(0, fail={"nvmlDeviceGetMemoryInfo_v2": ArgumentVersionMismatch()})
    [info] = NvmlProbe(FakeNvml([gpu])).read()

    assert info.memory_used_mib == 1536.0, "v1's used includes the driver's reserved 512 MiB"


def test_fields_the_device_cannot_report_are_none() -> None:
    unsupported = [
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetEccMode",
    ]
    gpu = h100(0, fail={call: NotSupported() for call in unsupported})
    probe = NvmlProbe(FakeNvml([gpu]))

    gpus, health = probe.check(GpuThresholds())

    assert gpus == [
        GpuInfo(
            index=0,
            uuid="GPU-00000000-aaaa-bbbb-cccc-dddddddddddd",
            name="NVIDIA H100 80GB HBM3",
        )
    ]
    assert gpus[0].temperature_c is None and gpus[0].ecc_uncorrectable is None
    assert health == Health(state=HealthState.ok, reasons=[])


def test_temperature_uses_the_newer_call_where_the_old_one_is_gone() -> None:
    gpu = h100(0, temperature_c=52, fail={"nvmlDeviceGetTemperature": FunctionNotFound()})
    [info] = NvmlProbe(FakeNvml([gpu])).read()

    assert info.temperature_c == 52.0


def test_throttle_bitmask_is_decoded_into_names() -> None:
    mask = (
        REASON_BITS["GpuIdle"]
        | REASON_BITS["SwPowerCap"]
        | REASON_BITS["HwSlowdown"]
        | REASON_BITS["HwThermalSlowdown"]
        | REASON_BITS["HwPowerBrakeSlowdown"]
        | 0x8000  # a bit this binding has no name for
    )
    [info] = NvmlProbe(FakeNvml([h100(0, reasons=mask)])).read()

    assert info.throttle_reasons == [
        "gpu_idle",
        "sw_power_cap",
        "hw_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "other_0x8000",
    ]


def test_throttle_reasons_decode_with_old_bindings_that_only_say_throttle() -> None:
    mask = REASON_BITS["SwThermalSlowdown"] | REASON_BITS["SyncBoost"]
    nvml = FakeNvml([h100(0, reasons=mask)], event_names=False)
    assert not hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons")

    [info] = NvmlProbe(nvml).read()

    assert info.throttle_reasons == ["sync_boost", "sw_thermal_slowdown"]


def test_throttle_reasons_fall_back_when_driver_lacks_event_call() -> None:
    gpu = h100(
        0,
        reasons=REASON_BITS["DisplayClockSetting"] | REASON_BITS["ApplicationsClocksSetting"],
        fail={"nvmlDeviceGetCurrentClocksEventReasons": FunctionNotFound()},
    )
    [info] = NvmlProbe(FakeNvml([gpu])).read()

    assert info.throttle_reasons == ["applications_clocks_setting", "display_clock_setting"]


# --- health through the probe -----------------------------------------------------------


def test_critical_temperature_is_critical() -> None:
    probe = NvmlProbe(FakeNvml([h100(0), h100(1, temperature_c=92)]))

    assert check(probe) == Health(
        state=HealthState.critical,
        reasons=["GPU 1 (NVIDIA H100 80GB HBM3) at 92°C >= critical 90°C"],
    )


def test_warn_temperature_only_warns() -> None:
    probe = NvmlProbe(FakeNvml([h100(0, temperature_c=86)]))

    assert check(probe) == Health(
        state=HealthState.warn,
        reasons=["GPU 0 (NVIDIA H100 80GB HBM3) at 86°C >= warn 85°C"],
    )


def test_uncorrectable_ecc_is_critical() -> None:
    probe = NvmlProbe(FakeNvml([h100(0, ecc_uncorrectable=3)]))

    assert check(probe) == Health(
        state=HealthState.critical,
        reasons=["GPU 0 (NVIDIA H100 80GB HBM3) has 3 uncorrectable ECC errors (volatile)"],
    )


def test_gpu_gone_from_the_count_is_critical() -> None:
    nvml = FakeNvml([h100(0), h100(1)])
    probe = NvmlProbe(nvml)
    assert check(probe).state == HealthState.ok

    del nvml.gpus[1]
    gpus, health = probe.check(GpuThresholds())

    assert [gpu.index for gpu in gpus] == [0]
    assert health == Health(
        state=HealthState.critical,
        reasons=["only 1 of 2 GPUs readable: a GPU was lost"],
    )


def test_gpu_lost_during_read_is_critical_and_named() -> None:
    nvml = FakeNvml([h100(0), h100(1)])
    probe = NvmlProbe(nvml)
    probe.read()

    nvml.gpus[1].fail["nvmlDeviceGetPowerUsage"] = GpuIsLost()
    gpus, health = probe.check(GpuThresholds())

    assert [gpu.index for gpu in gpus] == [0]
    assert health == Health(
        state=HealthState.critical,
        reasons=[
            "GPU 1 (NVIDIA H100 80GB HBM3): NVML error: GPU is lost",
            "only 1 of 2 GPUs readable: a GPU was lost",
        ],
    )


def test_handle_lookup_failure_at_first_read_is_critical() -> None:
    nvml = FakeNvml([h100(0, fail={"nvmlDeviceGetHandleByIndex": GpuIsLost()})])
    probe = NvmlProbe(nvml)

    gpus, health = probe.check(GpuThresholds())

    assert gpus == []
    assert health == Health(
        state=HealthState.critical,
        reasons=["GPU 0: NVML error: GPU is lost", "only 0 of 1 GPUs readable: a GPU was lost"],
    )


def test_nvml_error_mid_read_is_critical_not_raised() -> None:
    nvml = FakeNvml([h100(0, fail={"nvmlDeviceGetTotalEccErrors": Unknown()}), h100(1)])
    probe = NvmlProbe(nvml)

    gpus, health = probe.check(GpuThresholds())

    assert [gpu.index for gpu in gpus] == [1]
    assert health.state == HealthState.critical
    assert health.reasons[0] == "GPU 0: NVML error: Unknown Error"
    assert probe.errors == ["GPU 0: NVML error: Unknown Error"]

    del nvml.gpus[0].fail["nvmlDeviceGetTotalEccErrors"]
    assert check(probe) == Health(state=HealthState.ok, reasons=[]), "clears once NVML reads"
    assert probe.errors == []


def test_device_count_failure_is_critical() -> None:
    nvml = FakeNvml([h100(0)])
    probe = NvmlProbe(nvml)
    probe.read()

    nvml.count_error = Unknown()

    assert probe.check(GpuThresholds()) == (
        [],
        Health(
            state=HealthState.critical,
            reasons=[
                "NVML could not count GPUs: NVML error: Unknown Error",
                "only 0 of 1 GPUs readable: a GPU was lost",
            ],
        ),
    )


def test_broken_driver_is_critical_and_retried() -> None:
    nvml = FakeNvml([h100(0)])
    nvml.init_error = LibRmVersionMismatch()
    probe = NvmlProbe(nvml)

    assert check(probe) == Health(
        state=HealthState.critical,
        reasons=["NVML failed to start: NVML error: RM has detected an NVML/RM version mismatch."],
    )

    nvml.init_error = None
    assert [gpu.index for gpu in probe.read()] == [0]
    assert nvml.inits == 1


def test_close_shuts_nvml_down_once_and_a_later_read_restarts_it() -> None:
    nvml = FakeNvml([h100(0)])
    probe = NvmlProbe(nvml)
    probe.close()
    assert nvml.shutdowns == 0, "never started, nothing to shut down"

    with probe:
        probe.read()
    probe.close()
    assert (nvml.inits, nvml.shutdowns) == (1, 1)

    assert len(probe.read()) == 1
    assert nvml.inits == 2


async def test_async_reads_run_the_same_logic() -> None:
    probe = NvmlProbe(FakeNvml([h100(0, temperature_c=95)]))

    assert [gpu.temperature_c for gpu in await probe.read_async()] == [95.0]
    gpus, health = await probe.check_async(GpuThresholds())
    assert len(gpus) == 1
    assert health.state == HealthState.critical


# --- assess on its own --------------------------------------------------------------------


def test_assess_boundaries_are_inclusive() -> None:
    thresholds = GpuThresholds(temp_warn_c=80, temp_critical_c=88)

    def state(temperature_c: float) -> HealthState:
        gpus = [gpu_info(temperature_c=temperature_c)]
        return assess(gpus, thresholds, expected_count=1).state

    assert state(79.9) == HealthState.ok
    assert state(80) == HealthState.warn
    assert state(87.9) == HealthState.warn
    assert state(88) == HealthState.critical


def test_assess_throttling_warns_only_for_heat_and_power_brakes() -> None:
    calm = gpu_info(throttle_reasons=["sw_power_cap", "gpu_idle", "sync_boost"])
    hot = gpu_info(index=1, throttle_reasons=["sw_power_cap", "hw_thermal_slowdown"])

    assert assess([calm], GpuThresholds(), expected_count=None) == Health()
    assert assess([calm, hot], GpuThresholds(), expected_count=2) == Health(
        state=HealthState.warn,
        reasons=["GPU 1 (NVIDIA H100 80GB HBM3) clocks slowed: hw_thermal_slowdown"],
    )


def test_assess_keeps_warnings_beside_critical_reasons() -> None:
    gpus = [
        gpu_info(ecc_uncorrectable=1),
        gpu_info(index=1, temperature_c=84, throttle_reasons=["hw_power_brake_slowdown"]),
    ]
    thresholds = GpuThresholds(temp_warn_c=83)

    assert assess(gpus, thresholds, expected_count=2) == Health(
        state=HealthState.critical,
        reasons=[
            "GPU 0 (NVIDIA H100 80GB HBM3) has 1 uncorrectable ECC errors (volatile)",
            "GPU 1 (NVIDIA H100 80GB HBM3) at 84°C >= warn 83°C",
            "GPU 1 (NVIDIA H100 80GB HBM3) clocks slowed: hw_power_brake_slowdown",
        ],
    )


def test_assess_memory_warning_is_off_by_default() -> None:
    full = gpu_info(memory_used_mib=81000.0, memory_total_mib=81559.0)

    assert assess([full], GpuThresholds(), expected_count=1) == Health()
    assert assess([full], GpuThresholds(memory_warn_pct=98), expected_count=1) == Health(
        state=HealthState.warn,
        reasons=["GPU 0 (NVIDIA H100 80GB HBM3) memory 99.3% used >= warn 98%"],
    )


def test_assess_thresholds_can_be_switched_off() -> None:
    gpu = gpu_info(ecc_uncorrectable=5)

    assert assess([gpu], GpuThresholds(ecc_uncorrectable_critical=None), expected_count=1) == (
        Health()
    )


def test_thresholds_reject_warn_above_critical() -> None:
    with pytest.raises(ValidationError, match="temp_warn_c"):
        GpuThresholds(temp_warn_c=95, temp_critical_c=90)
