from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "labeling"
    verbose_name = "Demonstrations"

    def ready(self) -> None:
        # Red-team re-runs are jobs of the executor (sampler.jobs).
        from labeling.redteam import jobs

        del jobs
