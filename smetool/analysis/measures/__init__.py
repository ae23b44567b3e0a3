"""The measures of the analyses, one module each; every module defines ``MEASURE``
(:class:`~smetool.analysis.measure.Measure`) and is found by
:func:`~smetool.analysis.measure.registered_measures` without being listed anywhere."""
