from compression_fixtures import digits_files, digits_mlp, minilm_repository
from llm_fixtures import smollm2_version

__all__ = ["digits_files", "digits_mlp", "minilm_repository", "smollm2_version"]
