"""A synthetic aerial-imagery sample in the Inria layout, so that the book runs offline.

The Inria Aerial Image Labeling dataset is about 20 GB and cannot be fetched everywhere the
book is built. This module draws small look-alike tiles instead: 0.3 m RGB orthophotos of
five invented city styles with building footprint masks, written as GeoTIFFs in exactly the
folder layout and file naming of Inria, so every other part of ``plinknet`` reads them
unchanged, plus lab labels that Inria does not have::

    <out>/AerialImageDataset/train/images/<city><n>.tif   3-band uint8 RGB, LZW, 0.3 m
    <out>/AerialImageDataset/train/gt/<city><n>.tif       1-band uint8, 0 background, 255 building
    <out>/AerialImageDataset/train/lab/<city><n>_instances.tif    uint32 building ids 1..K, 0 none
    <out>/AerialImageDataset/train/lab/<city><n>_distractors.tif  uint8 LOOKALIKE_KINDS code, 0 none
    <out>/AerialImageDataset/train/lab/<city><n>_instances.csv    id, area_px, area_m2

Tiles 1..``val_tiles`` of each city are validation and the following ones, numbered from 6,
the rest, as in Inria (tiles 1-5 validation; the recipes then hold tile 6 out for selection
and train on the others). Numbers measured on this sample say
nothing about the paper: it only exercises the code.

What makes it more than coloured rectangles, and what a network has to learn:
  * buildings from 4 m sheds to 100 m warehouses, which is what the pyramid pooling of
    P-LinkNet is for; flat, gable and hip roofs whose faces are lit by the tile's sun,
    and shadows cast by buildings, trees and cars along that one sun direction;
  * distractors that need context: parking lots and paved courtyards as bright and flat as
    roofs but casting no shadow, swimming pools, fields, roads with kerbs and markings;
  * trees with textured canopies that overhang roofs. The mask keeps the whole building
    footprint under a canopy, as Inria's masks (drawn from cadastral footprints) do;
  * multi-scale ground texture, a light sensor blur and noise.

The lab labels (used by :mod:`plinknet.study.lab`) record what was drawn: every building is one
instance (a house with its garage wing, a roof with its rooftop units, a palace round its
courtyard), and its footprint pixels in the tile carry its id, so the instances together
are exactly the mask. Look-alike regions carry a code of ``LOOKALIKE_KINDS`` (parking lots,
paved courtyards and squares, farm and chalet yards, pools; see there which are left out and
why); they never overlap a building. Every city has large buildings and look-alikes:
gridtown its warehouses and car parks, farmland its barns and farmyards, alpine its big
chalets and their yards; suburbia got big-box stores and schools on their car parks, and the
old town palaces round paved courtyards, for the lab (the other cities' tiles are unchanged).

Time budget: the default sample (5 cities x 6 tiles of 1000 x 1000 pixels, 30 Mpx, about
90 MB) is sized so that the book trains two segmentation networks on it on 2 CPU cores in
a few minutes each, the whole book build (install included) staying under 20 minutes.
Generating it takes about 15 s on 2 CPU cores (numpy and Pillow, one core, no GPU).
Building pixels: about 9 % (farmland, alpine), 16.5 % (suburbia), 23 % (gridtown) and
33.5 % (oldtown), 18 % overall; Inria's is about 15 %.

:func:`generate_inria_scale` (``plinknet synth --inria-scale``) writes a second, much bigger
set for rehearsing paper-scale training and measuring data loading: Inria's 5 x 36 tiles of
5000 x 5000 pixels, uncompressed (about 18 GB, under 2 minutes on 2 CPU cores), each tile a
mosaic of a few patches drawn once per city. Its pixels are only plausible; it has no lab
labels.


Modules: :mod:`~plinknet.synthetic.tiles` (the cities and one tile), :mod:`~plinknet.synthetic.render`
(the renderer), :mod:`~plinknet.synthetic.layouts` (the five layouts), :mod:`~plinknet.synthetic.writer`
(the sample on disk) and :mod:`~plinknet.synthetic.inria_scale` (the Inria-size set).
"""

from plinknet.synthetic.inria_scale import InriaScaleConfig, generate_inria_scale
from plinknet.synthetic.render import COURTYARD, LOOKALIKE_KINDS, PARKING, POOL, YARD, SyntheticTile
from plinknet.synthetic.tiles import CITY_CRS, CITY_SUN, SYNTHETIC_CITIES, SyntheticConfig, draw_tile
from plinknet.synthetic.writer import MANIFEST, ensure_sample, generate, generate_tile, write_sample

__all__ = [
    "CITY_CRS", "CITY_SUN", "COURTYARD", "PARKING", "POOL", "YARD", "InriaScaleConfig", "LOOKALIKE_KINDS", "MANIFEST",
    "SYNTHETIC_CITIES", "SyntheticConfig",
    "SyntheticTile", "draw_tile", "ensure_sample", "generate", "generate_inria_scale", "generate_tile", "write_sample",
]  # fmt: skip
