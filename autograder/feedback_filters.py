"""Keep hidden tests hidden in the feedback learners receive.

nbgrader's feedback shows every test cell as it ran, hidden tests included, and a failing
hidden assert prints its own source line in the traceback. nbgrader's own ClearHiddenTests
removes the hidden region; ShortenTracebacks below shortens tracebacks in graded cells to the error's last line.
"""
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool


class ShortenTracebacks(Preprocessor):
    """In graded cells, keep only the final line of an error (its type and message)."""

    enabled = Bool(True)  # nbconvert skips preprocessors that are not enabled

    def preprocess_cell(self, cell, resources, index):
        if cell.metadata.get("nbgrader", {}).get("grade"):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output['ename']}: {output['evalue']}".rstrip(": ")]
        return cell, resources
