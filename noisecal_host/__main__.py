"""`python -m noisecal_host ...`: the headless command line (see noisecal_host/cli.py).

Runs outside ComfyUI: finds a ComfyUI host (COMFYUI_PATH, the ComfyUI this
pack sits in, or the registry snapshot), loads the pack as ComfyUI would,
then hands over to the pack's CLI. Only the two bootstrap modules (`host`,
`pack_loader`) are imported under their top-level names; everything else
runs as `noise_calibration.*`, the one name the pack's modules have.
"""

import importlib
import sys


def main(argv=None) -> int:
    from noisecal_host.host import ensure_host

    info = ensure_host(cpu="--gpu" not in (argv if argv is not None else sys.argv[1:]))
    print(info.describe(), flush=True)
    from noisecal_host.pack_loader import load_pack

    pack = load_pack()
    cli = importlib.import_module(f"{pack.__name__}.noisecal_host.cli")
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
