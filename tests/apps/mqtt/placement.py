"""Where a cluster places a receiver (cluster/placement.c), for the MQTT
cluster tests: rendezvous hashing, the live member with the highest
FNV-1a-64-then-MurmurHash3-finaliser weight of "member NUL address" (the
smaller name on a tie). An MQTT session "mqtt/session/<client id>" lives
there, so a test can choose client ids whose session lives on a given
node."""

import uuid

M64 = (1 << 64) - 1


def weight(member, addr):
    """hm_placement_weight()."""
    h = 0xcbf29ce484222325
    for b in member.encode() + b"\0" + addr.encode():
        h = ((h ^ b) * 0x100000001b3) & M64
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & M64
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & M64
    return h ^ (h >> 33)


def owner(addr, members):
    """hm_placement_owner(): the member `addr` lives on."""
    return max(members, key=lambda m: (weight(m, addr), [-ord(c) for c in m]))


def session_owner(client_id, members):
    return owner("mqtt/session/" + client_id, members)


def client_id_on(node, members, prefix="c"):
    """A fresh client id whose session lives on `node` among `members`."""
    while True:
        cid = "%s-%s" % (prefix, uuid.uuid4().hex[:8])
        if session_owner(cid, members) == node:
            return cid
