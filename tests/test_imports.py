"""What importing the package costs: errors and `onegen --help` load no torch, transformers or chromadb."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "chromadb")
REPORT = f"import sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"


def loaded_after(code: str) -> str:
    """The heavy modules a fresh interpreter holds after running `code`."""
    run = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT}"], capture_output=True, text=True, check=True)
    return run.stdout.strip().splitlines()[-1]


def test_importing_the_errors_loads_no_heavy_package() -> None:
    assert loaded_after("import onegen_integrations.errors") == "[]"


def test_the_command_line_help_loads_no_heavy_package() -> None:
    code = (
        "import contextlib, io\n"
        "from onegen_integrations.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "    main(['chat', '--help'])"
    )
    assert loaded_after(code) == "[]"


def test_public_names_load_their_module_on_first_use() -> None:
    import onegen_integrations
    from onegen_integrations.model import OneGenModel
    from onegen_integrations.options import GenerationOptions

    assert onegen_integrations.OneGenModel is OneGenModel
    assert onegen_integrations.GenerationOptions is GenerationOptions
    assert set(onegen_integrations.__all__) <= set(dir(onegen_integrations))
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = onegen_integrations.Nothing


def test_ray_is_imported_only_when_indexing_on_ray_starts() -> None:
    code = "import onegen_integrations.ray_indexing, sys\nprint('ray' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


def test_indexing_on_ray_without_ray_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from onegen_integrations.errors import ExtraNotInstalledError
    from onegen_integrations.ray_indexing import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when it is not installed
    with pytest.raises(ExtraNotInstalledError, match=r'pip install "onegen-integrations\[ray\]"'):
        require_ray()
