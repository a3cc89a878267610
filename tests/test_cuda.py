"""Every kernel in cuda/ compiles with NVRTC (no GPU needed), and its loader finds it."""

from __future__ import annotations

import pytest

from thrifty import _cuda


def test_kernels_ship_with_the_package() -> None:
    assert "steps" in _cuda.kernel_names()
    assert "hamming" in _cuda.kernel_names()
    assert "coreset" in _cuda.kernel_names()


@pytest.mark.parametrize("name", _cuda.kernel_names())
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_kernel_compiles_with_nvrtc(name: str, arch: str) -> None:
    ptx = _cuda.compile_ptx(name, arch=arch)
    text = ptx.decode(errors="replace")
    assert ".entry" in text
    if name == "steps":
        assert "jump_errors_f32" in text
        assert "jump_errors_f64" in text
    if name == "hamming":
        assert ".entry hamming_cdist(" in text
        assert ".entry hamming_topk(" in text
        for words in range(1, 9):
            assert f".entry hamming_topk_tiled_w{words}(" in text
        assert ".entry hamming_topk_merge(" in text
        # The distances must come from the hardware population count.
        assert "popc.b64" in text
    if name == "coreset":
        assert ".entry coreset_row_sq_norms_f64(" in text
        assert ".entry coreset_row_sq_norms_f32(" in text
        # A warp per row: the reduction goes through register shuffles, not shared memory.
        assert "shfl.sync.down" in text


def test_a_broken_kernel_reports_the_compiler_log(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "broken.cu").write_text('extern "C" __global__ void k() { undeclared(); }')
    monkeypatch.setattr(_cuda, "KERNEL_DIR", tmp_path)
    with pytest.raises(_cuda.InternalError, match="undeclared"):
        _cuda.compile_ptx("broken")
