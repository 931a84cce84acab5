"""``python -m datapipe.samplecrawl OUT_DIR``: build the sample crawl."""
from .build import main

raise SystemExit(main())
