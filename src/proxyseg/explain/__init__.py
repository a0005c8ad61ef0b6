"""Stage `explain`: relevance maths, prototypes and local explanations, faithfulness, saliency, ground truth."""
