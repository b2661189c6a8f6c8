"""URIs on this machine: pvc:// under the claims' mount root, file:// and plain paths as given, remote schemes refused."""

from __future__ import annotations

import pytest

from evomerge.models.uris import PVC_MOUNT_ROOT_ENV, UriError, local_file, local_path


def test_a_file_resolves_like_a_model_directory_on_every_local_scheme(tmp_path, monkeypatch):
    monkeypatch.setenv(PVC_MOUNT_ROOT_ENV, str(tmp_path))
    (tmp_path / "recipes" / "m").mkdir(parents=True)
    seed = tmp_path / "recipes" / "seed.yaml"
    seed.write_text("merge_method: linear\n")

    assert local_file("pvc://recipes/seed.yaml") == seed
    assert local_file(f"file://{seed}") == seed
    assert local_file(str(seed)) == seed
    assert local_path("pvc://recipes/m") == tmp_path / "recipes" / "m"  # the same root as for models


def test_a_directory_or_a_missing_file_is_not_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv(PVC_MOUNT_ROOT_ENV, str(tmp_path))
    (tmp_path / "recipes").mkdir()

    with pytest.raises(UriError, match=r"recipes is not a file — check the path"):
        local_file("pvc://recipes")
    with pytest.raises(UriError, match=r"absent.yaml is not a file"):
        local_file("pvc://recipes/absent.yaml")
    with pytest.raises(UriError, match="is not a directory with a checkpoint"):
        local_path(f"file://{tmp_path / 'absent'}")


@pytest.mark.parametrize("uri", ["hf://org/recipes/seed.yaml", "s3://bucket/seed.yaml"])
def test_remote_files_are_refused_with_where_to_put_them(uri):
    with pytest.raises(UriError, match=r"files are not fetched — copy the file onto a volume claim \(pvc://claim/path\)"):
        local_file(uri)
