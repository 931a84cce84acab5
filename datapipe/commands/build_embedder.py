"""``datapipe build-embedder``: distil the static embedding model (what ``make models`` runs)."""
from __future__ import annotations


def register(sub) -> None:
    from ..embed import DEFAULT_STATIC_DIR, MINILM, STATIC_DROP, STATIC_PCA_DIMS, STATIC_SIF
    b = sub.add_parser("build-embedder",
                       help="distil the static (model2vec) embedding model from the shipped MiniLM, offline")
    b.add_argument("out_dir", nargs="?", default=str(DEFAULT_STATIC_DIR),
                   help=f"model folder to write (default: {DEFAULT_STATIC_DIR}, where dedup_semantic's "
                        "`model: auto` looks)")
    b.add_argument("--source", default=MINILM, help="local sentence-transformers folder (default: the packaged MiniLM)")
    b.add_argument("--pca-dims", type=int, default=STATIC_PCA_DIMS, help="dimensions kept")
    b.add_argument("--drop-components", type=int, default=STATIC_DROP,
                   help="largest principal directions dropped (what all texts of a language share)")
    b.add_argument("--sif", type=float, default=STATIC_SIF, help="SIF weighting coefficient")
    b.add_argument("--force", action="store_true", help="rebuild even if the folder holds a model")
    b.set_defaults(fn=run)


def run(args) -> int:
    import sys

    from ..embed import EmbedderError, build_static_model, is_static_folder
    if is_static_folder(args.out_dir) and not args.force:
        print(f"{args.out_dir}: a static model is already there (--force rebuilds it)", file=sys.stderr)
        return 0
    try:
        build_static_model(args.out_dir, source=args.source, pca_dims=args.pca_dims,
                           drop_components=args.drop_components, sif_coefficient=args.sif)
    except EmbedderError as e:
        print(f"datapipe: error: {e}", file=sys.stderr)
        return 2
    return 0
