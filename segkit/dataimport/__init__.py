"""Annotation files of other tools turned into what the ``folder`` dataset reads.

``segkit data import --from coco|labelme`` reads COCO JSON or labelme JSON files
(:mod:`~segkit.dataimport.coco`, :mod:`~segkit.dataimport.labelme`), which describe each image
as a list of regions (polygons, RLE masks, rectangles, circles) with a class name. Both become
:class:`~segkit.dataimport.raster.MaskJob` lists, one per image; one painter
(:mod:`~segkit.dataimport.raster`) turns a job into an index mask under an overlap rule, and
:mod:`~segkit.dataimport.output` writes the masks and the class list atomically. What could not
be used is collected in a :class:`~segkit.dataimport.report.ImportReport`, so that a user can fix
the input instead of discovering a silently thinner dataset.
"""
