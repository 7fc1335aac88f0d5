"""lab.hosts' cache lock, on a real file lock in a temporary cache: one lab at a time prepares the
shared key (the same lock guards the rootfs and the ufw layer), and a second lab waits for it."""

import threading
import time

from lab.hosts import Lab


def test_a_second_lab_waits_for_the_first_to_release_the_cache(tmp_path):
    first, second = (Lab(state_dir=tmp_path / f"state{i}", cache_dir=tmp_path / "cache") for i in (1, 2))
    done = []
    with first._cache_lock():
        waiter = threading.Thread(target=lambda: done.append(second.ensure_key()))
        waiter.start()
        time.sleep(1.0)
        assert not done  # the second lab is waiting on the lock, not making a key beside the first
    waiter.join(timeout=30)
    assert done == [tmp_path / "cache" / "id_ed25519"]
    assert done[0].is_file() and (done[0].stat().st_mode & 0o777) == 0o600
    assert first.ensure_key() == done[0]  # made once; taking the lock again does not hang
