from compression_fixtures import digits_files, digits_mlp, minilm_repository

__all__ = ["digits_files", "digits_mlp", "minilm_repository"]
