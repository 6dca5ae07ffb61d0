import pytest
import torch


@pytest.fixture(scope="module")
def pyscf_one_thread():
    """PySCF and torch each start an OpenMP pool; on a few shared cores they thrash.

    Modules that run PySCF use it with ``pytestmark = pytest.mark.usefixtures("pyscf_one_thread")``.
    """
    from pyscf import lib

    threads = (torch.get_num_threads(), lib.num_threads())
    torch.set_num_threads(1)
    lib.num_threads(1)
    yield
    torch.set_num_threads(threads[0])
    lib.num_threads(threads[1])
