"""datapipe: pretraining-data curation on Ray (WARC -> text -> filters -> dedup -> token streams)."""
__version__ = "0.1.0"
