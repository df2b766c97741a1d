from django.apps import AppConfig


class SamplerConfig(AppConfig):
    name = "sampler"
    verbose_name = "Models, generation and training"

    def ready(self) -> None:
        # Each feature registers its kinds of jobs with the executor.
        from sampler.comparisons import jobs as comparison_jobs
        from sampler.generation import jobs as generation_jobs
        from sampler.runs import jobs as run_jobs

        del comparison_jobs, generation_jobs, run_jobs
