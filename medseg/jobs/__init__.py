"""The work of the service: the job table (states, rows, writes, reads), study assembly, the
worker, the runner (``segment_study``) and SEG delivery."""
