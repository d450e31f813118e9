import errno

from crypto_pipeline.errors import storage_error
from crypto_pipeline.local_run import step_failure

LOG = """\
04:06:59.100 - INFO - Executing task \x1b[96m'ingest-step'\x1b[0m
    ingested 10 rows
04:06:59.200 - INFO - Task \x1b[96m'ingest-step'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
04:06:59.300 - INFO - Executing task \x1b[96m'transform-step'\x1b[0m
    Traceback (most recent call last):
      File "x.py", line 1, in <module>
        raise ValueError("an earlier one")
    ValueError: an earlier one

    During handling of the above exception, another exception occurred:

    Traceback (most recent call last):
      File "transform.py", line 9, in transform
    crypto_pipeline.errors.CoinNotFoundError: no rows of 'dogecoin' in the file
      coins with the most rows: bitcoin 1,000
      fix: pass --coin with one of the coins above

04:06:59.343 - ERROR - Task \x1b[96m'transform-step'\x1b[0m finished with status \
\x1b[91mFAILURE\x1b[0m
"""


def test_a_failed_steps_own_error_and_fix_are_read_from_the_log():
    failure = step_failure(LOG, "transform")
    assert failure.problem == (
        "no rows of 'dogecoin' in the file\n  coins with the most rows: bitcoin 1,000"
    )
    assert failure.fix == "pass --coin with one of the coins above"


def test_any_other_exception_is_named_and_a_full_disk_gets_a_fix():
    log = LOG.replace(
        "crypto_pipeline.errors.CoinNotFoundError: no rows of 'dogecoin' in the file\n"
        "      coins with the most rows: bitcoin 1,000\n"
        "      fix: pass --coin with one of the coins above\n",
        "OSError: [Errno 28] No space left on device: '/runs/x'\n",
    )
    failure = step_failure(log, "transform")
    assert failure.problem == "OSError: [Errno 28] No space left on device: '/runs/x'"
    assert failure.fix.startswith("free some space")


def test_failed_writes_become_errors_with_fixes():
    full = storage_error(OSError(errno.ENOSPC, "No space left on device", "/runs/a"))
    assert full.problem == "cannot write to /runs/a: the disk is full"
    read_only = storage_error(OSError(errno.EROFS, "Read-only file system", "/mnt"))
    assert "read-only" in read_only.problem and "--pipeline-root" in read_only.fix
    assert storage_error(OSError(errno.ENOENT, "No such file")) is None


def test_a_refreshed_cache_runs_every_step_and_the_next_run_takes_it_from_there(tmp_path):
    """kfp.local with caching off neither reads nor writes its cache; a refresh writes."""
    from kfp import dsl, local
    from kfp.dsl import Artifact, Output

    from crypto_pipeline.local_run import cache_refreshed

    @dsl.component(base_image="python:3.11-slim-bookworm", install_kfp_package=False)
    def stamp(seed: int, out: Output[Artifact]):
        import uuid

        with open(out.path, "w") as f:
            f.write(f"{seed} {uuid.uuid4()}")

    @dsl.pipeline(name="stamped")
    def stamped() -> Artifact:
        return stamp(seed=1).outputs["out"]

    def run(caching: bool = True) -> str:
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(tmp_path),
            enable_caching=caching,
        )
        return stamped().output.uri

    first = run()
    assert run() == first  # from the cache
    assert run(caching=False) != first  # ran, and left the cache as it was
    assert run() == first
    with cache_refreshed():
        refreshed = run()
    assert refreshed != first  # ran, although the cache held it
    assert run() == refreshed  # and the cache now holds what it wrote
