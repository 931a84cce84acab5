# Types of the names datapipe/__init__.py imports on first use (PEP 561: the package ships py.typed).
from .api import Pipeline as Pipeline, PreflightError as PreflightError, Result as Result, open_run as open_run, spec as spec
from .config import ConfigError as ConfigError, PipelineConfig as PipelineConfig, load_config as load_config
from .preflight import CheckReport as CheckReport, Estimate as Estimate, preflight as preflight
from .stage import (Filter as Filter, Resources as Resources, Stage as Stage, StageError as StageError,
                    Workflow as Workflow, WorkflowContext as WorkflowContext, register as register)
from .stats import StageStats as StageStats

__version__: str
__all__: list[str]
