"""lab.hosts' cache lock, on a real file lock in a temporary cache: one lab at a time prepares the
shared key, rootfs and ufw layer, a second lab waits for it, and the nested preparations (the
layer needs the rootfs, which needs the key) take the lock once."""

import threading
import time

from lab.hosts import MARKER, ROOTFS_VERSION, Lab


def _labs(tmp_path):
    return (Lab(state_dir=tmp_path / f"state{i}", cache_dir=tmp_path / "cache") for i in (1, 2))


def test_a_second_lab_waits_for_the_first_to_release_the_cache(tmp_path):
    first, second = _labs(tmp_path)
    done = []
    with first._cache_lock():
        waiter = threading.Thread(target=lambda: done.append(second.ensure_key()), daemon=True)
        waiter.start()
        time.sleep(1.0)
        assert not done  # the second lab is waiting on the lock, not making a key beside the first
    waiter.join(timeout=30)
    assert done == [tmp_path / "cache" / "id_ed25519"]
    assert done[0].is_file() and (done[0].stat().st_mode & 0o777) == 0o600
    assert first.ensure_key() == done[0]  # made once


def test_the_ufw_layer_takes_the_lock_once_for_the_rootfs_and_key_beneath_it(tmp_path, monkeypatch):
    lab, _ = _labs(tmp_path)
    built = []

    def build_rootfs(self):
        built.append("rootfs")
        (self.rootfs / MARKER).parent.mkdir(parents=True)
        (self.rootfs / MARKER).write_text(ROOTFS_VERSION)

    # the builds themselves (debootstrap, apt-get in a chroot) are the e2e tests' (tests/test_lab_hosts.py)
    monkeypatch.setattr(Lab, "_build_rootfs", build_rootfs)
    monkeypatch.setattr(Lab, "_build_ufw_layer", lambda self: built.append("ufw"))
    monkeypatch.setattr(Lab, "_authorize_key", lambda self, root: built.append("key authorized"))
    done = []

    def run():
        try:
            done.append(lab.ensure_ufw_layer())
        except Exception as exc:  # noqa: BLE001 - shown by the assertion below
            done.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert done, "ensure_ufw_layer hung on its own lock"
    assert done == [lab.ufw_layer]
    assert built == ["rootfs", "key authorized", "ufw"] and lab.key_path.is_file()
