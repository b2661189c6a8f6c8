"""The built images' fixtures: the operator image (hack/images/build.sh) and, for running it against a cluster,
the real control plane and the chart installed by helm (tests/k8s' fixtures)."""

from tests.charts.conftest import helm  # noqa: F401 - the chart rendered by the control plane's helm
from tests.k8s.conftest import api_client, chart_release, control_plane, control_plane_bin_dir, namespace  # noqa: F401
from tests.support.podman import operator_image  # noqa: F401 - a session fixture
