"""Interactive maps for the book (folium): the basemap tiles load in the reader's browser, the build stays offline."""

from __future__ import annotations

from collections.abc import Mapping


def polygon_map(polygons: Mapping, caption: str, colour: str = "#D55E00"):
    """A folium map of a GeoJSON FeatureCollection in WGS84 (lon/lat), zoomed to it, each polygon's area on hover
    (or tap), in a figure of fixed height. Its scripts and basemap come from other hosts: offline it stays blank, so
    pages show :func:`plinknet_book.plots.plot_polygons` beside it.

    Args:
        polygons: RFC 7946 FeatureCollection (``building_polygons(..., wgs84=True)``), ``area_m2`` per feature.
        caption: the layer's name in the map's layer control.
    """
    import folium

    features = polygons["features"]
    if not features:
        raise ValueError("no polygon to show: the mask holds no building")
    lons, lats = [], []
    for feature in features:
        for ring in feature["geometry"]["coordinates"]:
            for lon, lat in ring:
                lons.append(lon)
                lats.append(lat)
    frame = folium.Figure(width="100%", height="420px")  # a plain iframe: no "Trust Notebook" line under it
    fmap = folium.Map(tiles="OpenStreetMap", control_scale=True).add_to(frame)
    folium.GeoJson(
        polygons,
        name=caption,
        style_function=lambda _: {"color": colour, "weight": 1, "fillOpacity": 0.35},
        tooltip=folium.GeoJsonTooltip(fields=["area_m2"], aliases=["area (m²)"], localize=True),
    ).add_to(fmap)
    folium.LayerControl().add_to(fmap)
    fmap.fit_bounds([[min(lats), min(lons)], [max(lats), max(lons)]])
    return frame
