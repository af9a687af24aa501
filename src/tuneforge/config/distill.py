"""The knowledge-distillation section (`tuneforge distill TEACHER_RUN CONFIG`)."""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.config.fields import require, setting


@dataclass
class DistillConfig:
    from_teacher: bool = setting(True, "true: the student is a copy of the teacher keeping `keep_layers` and their "
                                 "weights (DistilBERT's start); false: the student is `model.name` with a fresh "
                                 "head.")
    keep_layers: list[int] | None = setting(None, "Teacher layers the student keeps (0-based); null = every other "
                                            "layer (0, 2, 4 of 6).")
    temperature: float = setting(2.0, "Softens both models' outputs before the KL term (the loss is scaled by T^2).")
    kd_weight: float = setting(0.5, "Weight of the KL term to the teacher's outputs.")
    ce_weight: float = setting(0.5, "Weight of the cross-entropy to the true labels.")
    hidden_weight: float = setting(0.0, "Weight of the MSE between matched hidden states (same-width students).")
    attention_weight: float = setting(0.0, "Weight of the MSE between matched attention maps (same head count).")
    cache_teacher_logits: bool = setting(True, "Compute the teacher's logits over the training data once and cache "
                                         "them beside the teacher (not with hidden or attention matching).")
    unlabelled_file: str | None = setting(None, "Extra unlabelled texts (.txt, one per line, or a table with "
                                          "`data.text_column`) used for the KL term only.")

    def check(self, source: str) -> None:
        """Refuse values of the right type that cannot work (``source`` names the file in the message)."""
        require(source, [
            ("distill.keep_layers", self.keep_layers, self.keep_layers is None or len(self.keep_layers) > 0,
             "null or a non-empty list"),
            ("distill.temperature", self.temperature, self.temperature > 0, "positive"),
            ("distill.kd_weight", self.kd_weight, self.kd_weight >= 0, "not negative"),
            ("distill.ce_weight", self.ce_weight, self.ce_weight >= 0, "not negative"),
            ("distill.hidden_weight", self.hidden_weight, self.hidden_weight >= 0, "not negative"),
            ("distill.attention_weight", self.attention_weight, self.attention_weight >= 0, "not negative"),
        ])
