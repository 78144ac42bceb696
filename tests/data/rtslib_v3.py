"""What rtslib-fb meets on the 2009 tree (simfs run --kernel v3.0); prints JSON.

    rtslib_v3.py NAME    makes a ramdisk storage object NAME through rtslib-fb, then dumps
                         the configuration (a device made by the shell is there too)
"""
import json
import sys


def failure(fn):
    """The exceptions of ``fn()``, first (the cause) to last, as (type, errno, filename)."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - what rtslib-fb raises is the subject
        chain = []
        while e is not None:
            chain.append((type(e).__name__, getattr(e, "errno", None),
                          getattr(e, "filename", None), str(e)))
            e = e.__context__
        return chain[::-1]
    return None


import rtslib_fb as r  # noqa: E402

root = r.RTSRoot()
print(json.dumps({
    "create": failure(lambda: r.RDMCPStorageObject(sys.argv[1], size=8 << 20)),
    "dump": failure(root.dump),
}))
