#!/usr/bin/env python3
"""Render Zennit reference heatmaps for the pixel-identity tests of crates/prism-heatmap.

Usage (needs numpy, pillow and zennit; not run by CI, the outputs are committed):

    python scripts/make_heatmap_reference.py [OUT_DIR]

OUT_DIR defaults to crates/prism-heatmap/tests/fixtures/zennit. It writes
- inputs: small random arrays as .npy (float32 and float64),
- cases.tsv: one rendering case per line, and <case>.png rendered by zennit.image.imsave,
- palettes.tsv + palette_*.png: palettes of every built-in map at extra levels,
- cmsl.tsv: Zennit's compiled nodes (or "error") for fixed and random CMSL strings.
The Rust test decodes every PNG and requires identical palette indices, palettes and pixels.
"""
import os
import random
import sys

import numpy as np
from PIL import Image

import zennit
from zennit.cmap import ColorMap
from zennit.image import CMAPS, imgify, imsave

HERE = os.path.dirname(os.path.abspath(__file__))

def _putpalette_accepting_arrays():
    """Zennit 0.5.1 passes a (256, 3) uint8 numpy array to `Image.putpalette`; Pillow 13 no longer
    turns it into bytes itself (it used to call `bytes(data)`). Convert it the way old Pillow did,
    so that zennit's own imgify/imsave run unchanged."""
    original = Image.Image.putpalette
    if getattr(original, '_prism_shim', False):
        return

    def putpalette(self, data, rawmode='RGB'):
        if isinstance(data, np.ndarray):
            data = bytes(np.ascontiguousarray(data, dtype=np.uint8))
        return original(self, data, rawmode)

    putpalette._prism_shim = True
    Image.Image.putpalette = putpalette


_putpalette_accepting_arrays()

DEFAULT_OUT = os.path.join(HERE, '..', 'crates', 'prism-heatmap', 'tests', 'fixtures', 'zennit')

CMSL_CASES = {
    'cmsl_hardedge': '70:0d0,70:ddd,90:ddd,90:d0d',
    'cmsl_spread': '2:0ff,00f,000,fff,f80,e0:ff0',
    'cmsl_mixed': ' F0F, 1:0A0 ,7f:abcdef,8:123456,ff0,',
}


def save_case(out, rows, name, array_name, array, cmap='bwr', level=1.0, mode='unaligned',
              vmin=None, vmax=None, grid=None, channels='sum', sample=0):
    """Render one case with zennit and record how to repeat it."""
    if mode == 'absolute':
        # |R| scaled to [0, max|R|], in the array's dtype (0-d arrays keep float32 arithmetic).
        obj = np.abs(array)
        vmin_ = obj.dtype.type(0) if vmin is None else vmin
        vmax_ = obj.max() if vmax is None else vmax
    else:
        obj, vmin_, vmax_ = array, vmin, vmax
    kwargs = dict(vmin=vmin_, vmax=vmax_, cmap=cmap, level=level, symmetric=(mode == 'symmetric'))
    if grid is not None:
        kwargs['grid'] = True if grid == 'auto' else tuple(int(v) for v in grid.split('x'))
    imsave(os.path.join(out, f'{name}.png'), obj, **kwargs)
    cell = lambda v: '-' if v is None else repr(float(v))
    rows.append('\t'.join([
        name, array_name, cmap, repr(float(level)), mode, cell(vmin), cell(vmax),
        grid or '-', channels, str(sample),
    ]))


def random_cmsl(rng):
    """A short string over CMSL's alphabet: mostly valid, sometimes broken on purpose."""
    parts = []
    index = rng.randrange(0, 64)
    for _ in range(rng.randint(1, 6)):
        node = ''
        if rng.random() < 0.4:
            index = min(255, index + rng.randrange(0, 80)) if rng.random() < 0.85 else rng.randrange(256)
            digits = '%02x' % index
            node += (digits[0] if digits[0] == digits[1] and rng.random() < 0.5 else digits) + ':'
        length = rng.choice((3, 6)) if rng.random() < 0.95 else rng.choice((1, 2, 4, 5, 7))
        node += ''.join(rng.choice('0123456789abcdefABCDEF') for _ in range(length))
        parts.append(node)
    text = ','.join(parts) + (',' if rng.random() < 0.1 else '')
    if rng.random() < 0.1:
        pos = rng.randrange(len(text) + 1)
        text = text[:pos] + rng.choice([' ', ',', ':', 'x', '\t', '#', '\u00e9']) + text[pos:]
    return text


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0x5EED)

    arrays = {
        'randn': rng.standard_normal((24, 32)).astype(np.float32),
        'positive': np.abs(rng.standard_normal((24, 32))).astype(np.float32) + 0.25,
        'randn64': rng.standard_normal((24, 32)) * 1e-3,
        'batch': rng.standard_normal((5, 3, 16, 16)).astype(np.float32),
        'rgb': rng.standard_normal((1, 3, 16, 16)).astype(np.float32),
    }
    for name, array in arrays.items():
        np.save(os.path.join(out, f'{name}.npy'), array)

    rows = []
    a = arrays['randn']
    for cmap in CMAPS:
        for mode in ('symmetric', 'unaligned'):
            for level in (1.0, 2.0):
                save_case(out, rows, f'{cmap}_{mode}_l{level:g}', 'randn', a, cmap, level, mode)
    for key, source in CMSL_CASES.items():
        for mode in ('symmetric', 'unaligned'):
            for level in (1.0, 2.0):
                save_case(out, rows, f'{key}_{mode}_l{level:g}', 'randn', a, source, level, mode)

    # Other levels, normalisations, explicit bounds, dtypes and layouts.
    save_case(out, rows, 'coldnhot_symmetric_l0.5', 'randn', a, 'coldnhot', 0.5, 'symmetric')
    save_case(out, rows, 'bwr_symmetric_l-1', 'randn', a, 'bwr', -1.0, 'symmetric')
    save_case(out, rows, 'hot_absolute_l1', 'randn', a, 'hot', 1.0, 'absolute')
    save_case(out, rows, 'wred_positive_symmetric', 'positive', arrays['positive'], 'wred', 1.0, 'symmetric')
    save_case(out, rows, 'gray_positive_unaligned', 'positive', arrays['positive'], 'gray', 1.0, 'unaligned')
    save_case(out, rows, 'bwr_vmin_vmax', 'randn', a, 'bwr', 1.0, 'unaligned', vmin=-0.75, vmax=1.5)
    save_case(out, rows, 'seismic_vmax_only', 'randn', a, 'seismic', 1.0, 'symmetric', vmax=0.3)
    save_case(out, rows, 'coolio_vmin_only', 'randn', a, 'coolio', 1.0, 'unaligned', vmin=-2.5)
    save_case(out, rows, 'bwr_f64_symmetric', 'randn64', arrays['randn64'], 'bwr', 1.0, 'symmetric')
    save_case(out, rows, 'coleus_f64_unaligned', 'randn64', arrays['randn64'], 'coleus', 1.5, 'unaligned')
    batch_sum = arrays['batch'].sum(1)
    save_case(out, rows, 'batch_sample3_sum', 'batch', batch_sum[3], 'coldnhot', 1.0, 'symmetric', sample=3)
    save_case(out, rows, 'batch_grid_auto', 'batch', batch_sum, 'coldnhot', 1.0, 'symmetric', grid='auto')
    save_case(out, rows, 'batch_grid_2x2', 'batch', batch_sum, 'france', 1.0, 'unaligned', grid='2x2')
    save_case(out, rows, 'batch_grid_2x3', 'batch', batch_sum, 'bwr', 2.0, 'symmetric', grid='2x3')
    save_case(out, rows, 'rgb_unreduced', 'rgb', arrays['rgb'][0], 'bwr', 1.0, 'unaligned', channels='none')

    with open(os.path.join(out, 'cases.tsv'), 'w') as fd:
        fd.write('# name\tinput\tcmap\tlevel\tmode\tvmin\tvmax\tgrid\tchannels\tsample\n')
        fd.write(f'# zennit {zennit.__version__ if hasattr(zennit, "__version__") else "0.5.1"}, '
                 f'numpy {np.__version__}\n')
        fd.write('\n'.join(rows) + '\n')

    # Palettes at further levels, as 256×1 palette images of the indices 0..255.
    palette_rows = []
    ramp = np.arange(256, dtype=np.uint8)[None]
    for cmap in CMAPS:
        for level in (0.5, 1.5, 3.7, -0.3):
            name = f'palette_{cmap}_l{level:g}'
            imgify(ramp, cmap=cmap, level=level).save(os.path.join(out, f'{name}.png'))
            palette_rows.append(f'{name}\t{cmap}\t{level!r}')
    with open(os.path.join(out, 'palettes.tsv'), 'w') as fd:
        fd.write('\n'.join(palette_rows) + '\n')

    # Compiled nodes of fixed and random CMSL strings, or "error" where Zennit rejects them.
    pyrng = random.Random(7)
    sources = [source for source in CMAPS._sources.values()] + list(CMSL_CASES.values()) + [
        '000,fff', '0:000,fff', 'ff:000,fff', '000,80:fff', '000,80:fff,', ',000,fff', '000,,fff',
        '0000,fff', '000:fff', '8:000,4:fff', '80:000,80:fff', '000,80:fff,80:000,fff', 'fff', '',
        '000, 1 : fff ,\n2:abc', '000,f', '000,ff:', '000,fff fff', 'ABCDEF,abcdef', '000,fff#',
        '1:000,1:fff,1:000,fff', '000,111,222,333,444,555,666,777,888,999,aaa,bbb,ccc,ddd,eee,fff',
        'f0:000,fff', '000,01:fff,02:000', '000,abc,def,fe:123',
    ] + [random_cmsl(pyrng) for _ in range(300)]
    with open(os.path.join(out, 'cmsl.tsv'), 'w') as fd:
        for source in sources:
            try:
                cmap = ColorMap(source)
                indices = ' '.join(str(int(i)) for i in cmap._indices)
                colors = ' '.join('%02x%02x%02x' % tuple(int(v) for v in c) for c in cmap._colors)
                result = f'{indices}\t{colors}'
            except RuntimeError:
                result = 'error\t-'
            fd.write(f'{source.encode("unicode_escape").decode()}\t{result}\n')


if __name__ == '__main__':
    main()
