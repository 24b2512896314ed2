"""Options shared by `predict` and `batch` (model), by them with `embed` and `train` (regions, MPP), and by the
verbs that scale out on Dask (cluster)."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from ..batch.cluster_access import ClusterAccess
from ..engines.openvino_session import PRECISIONS as OV_PRECISIONS
from ..engines.session import AUTO, DEVICES, ENGINES
from ..mri.occlusion import OCCLUSION_GRID
from ..slide.regions import DEFAULT_EXCLUDE, DEFAULT_INCLUDE, DEFAULT_OBJECT_TYPES, OBJECT_TYPES, RegionRules
from ..slide.slide import MppRule


def model_options(func):
    """--model, --device, --engine, --ov-precision, --allow-lower-fidelity, --confidence, --seed, --threads,
    --read-workers, --trusted-key, then region_options."""
    options = [
        click.option("--model", "-m", required=True, type=click.Path(dir_okay=False),
                     help="netorigin ONNX model (see `netorigin inspect`)."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                     help="auto = CUDA when available, else CPU; cuda never falls back silently."),
        click.option("--engine", type=click.Choice(ENGINES), default=AUTO, show_default=True,
                     help="auto = OpenVINO bf16 on a CPU run where installed, the CPU has bf16 and the model's "
                          "own check passed (0 verdict flips, |dS| <= 1 % of the band on its calibration "
                          "patients), measured with this OpenVINO on this CPU type; else ONNX Runtime; openvino = "
                          "OpenVINO on the CPU (extra 'openvino')."),
        click.option("--ov-precision", type=click.Choice(OV_PRECISIONS), default="auto", show_default=True,
                     help="OpenVINO inference precision (auto = bf16 where the model's check vouches for it on "
                          "this host, else f32)."),
        click.option("--allow-lower-fidelity", is_flag=True,
                     help="Run a precision variant or engine whose fidelity check failed or was measured on "
                          "another engine version, provider or CPU/GPU type; every report then says LOWER "
                          "FIDELITY."),
        click.option("--confidence", "-c", default=None,
                     help="Stored confidence level c (e.g. 0.875 or 7/8); default: the model's."),
        click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Patch-sampling seed."),
        click.option("--threads", type=click.IntRange(1), default=None,
                     help="ONNX Runtime CPU threads (default: all)."),
        click.option("--read-workers", type=click.IntRange(1), default=4, show_default=True,
                     help="Slide-reading threads."),
        click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(dir_okay=False),
                     help="Accept only models signed by this Ed25519 public key (repeatable; env "
                          "NETORIGIN_TRUSTED_KEY, paths separated by ':')."),
    ]
    for option in reversed(options):
        func = option(func)
    return region_options(func)


def region_options(func):
    """Region and MPP options, defined once for predict, batch, embed and train (slides sampled alike)."""
    options = [
        click.option("--include-class", "include", multiple=True, default=DEFAULT_INCLUDE, show_default=True,
                     help="QuPath class(es) that mark tumour (repeatable)."),
        click.option("--exclude-class", "exclude", multiple=True, default=DEFAULT_EXCLUDE, show_default=True,
                     help="QuPath class(es) cut out of the tumour (repeatable; 'Name*' = prefix)."),
        click.option("--object-type", "object_types", multiple=True, type=click.Choice(OBJECT_TYPES),
                     default=DEFAULT_OBJECT_TYPES, show_default=True,
                     help="QuPath object types that can be regions (repeatable); detections and cells only "
                          "when asked for."),
        click.option("--mpp", type=click.FloatRange(0, min_open=True), default=None,
                     help="Microns per pixel for slides that do not record it (a recorded value wins)."),
        click.option("--force-mpp", type=click.FloatRange(0, min_open=True), default=None,
                     help="Microns per pixel used instead of what the slides record (known mis-calibrated "
                          "scanner); reports say it was forced."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def region_rules(include: tuple[str, ...], exclude: tuple[str, ...], object_types: tuple[str, ...]) -> RegionRules:
    """The region options as the library's rules."""
    return RegionRules(include=tuple(include), exclude=tuple(exclude), object_types=tuple(object_types))


def mpp_rule(mpp: float | None, force_mpp: float | None) -> MppRule:
    """The MPP options as the library's rule; both at once is a usage error."""
    if mpp is not None and force_mpp is not None:
        raise click.UsageError("give --mpp (slides without MPP) or --force-mpp (every slide), not both")
    return MppRule(fallback=mpp, forced=force_mpp)


# Every verb with a progress bar (runtime.progress) takes it.
quiet_option = click.option("--quiet", "-q", is_flag=True,
                            help="No progress bar (it is shown only on a terminal anyway).")


def cluster_options(tasks: str):
    """--scheduler and the mutual-TLS options, given to the command as one `cluster` (a ClusterAccess); `tasks`
    says what one task is for this verb."""

    def decorate(func):
        @click.option("--scheduler", default=None, metavar="ADDRESS",
                      help=f"Dask scheduler, tls://host:8786 (tcp:// only on loopback or with --insecure-cluster): "
                           f"{tasks}.")
        @click.option("--tls-ca", type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="The cluster's CA certificate (PEM); default: Dask's distributed.comm.tls.ca-file.")
        @click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="This client's certificate (PEM), signed by that CA; default: Dask's "
                           "distributed.comm.tls.client.cert.")
        @click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="This client's private key (PEM); default: Dask's distributed.comm.tls.client.key.")
        @click.option("--insecure-cluster", is_flag=True,
                      help="Accept a plaintext tcp:// scheduler off this host: the network is trusted (recorded).")
        @functools.wraps(func)
        def wrapper(*args, scheduler, tls_ca, tls_cert, tls_key, insecure_cluster, **kwargs):
            return func(*args, cluster=ClusterAccess(scheduler, tls_ca, tls_cert, tls_key, insecure_cluster),
                        **kwargs)

        return wrapper

    return decorate


occlusion_option = click.option(
    "--occlusion-grid", type=click.IntRange(0, 32), default=None,
    help=f"MRI lesion models: the case page's occlusion maps on a grid of this many cells a side (default "
         f"{OCCLUSION_GRID}; grid x grid extra model runs per image group); 0 = a page without them.")


def page_grid(occlusion_grid: int | None) -> int | None:
    """The occlusion grid a case page is made with (None: no maps)."""
    grid = OCCLUSION_GRID if occlusion_grid is None else occlusion_grid
    return grid or None


def refuse_slide_options(given: dict[str, bool]) -> None:
    """An MRI lesion model given options that only slide models take: one usage line naming them all."""
    named = [name for name, present in given.items() if present]
    if named:
        raise click.UsageError(f"{', '.join(named)}: for slide models, not this MRI lesion model")


def slide_model_options(engine: str, ov_precision: str, allow_lower_fidelity: bool, confidence: float | None,
                        mpp: float | None, force_mpp: float | None) -> dict[str, bool]:
    """Which of the model options only slide models take were given (an MRI model runs on ONNX Runtime fp32, has
    no band and reads no slide)."""
    return {"--engine": engine != "auto", "--ov-precision": ov_precision != "auto",
            "--allow-lower-fidelity": allow_lower_fidelity, "--confidence": confidence is not None,
            "--mpp": mpp is not None, "--force-mpp": force_mpp is not None}
