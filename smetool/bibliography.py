"""References as data: BibTeX-ready entries that solvers and plug-ins declare on their classes.

A solver or plug-in class lists the papers it rests on in its ``references`` class attribute,
a tuple of :class:`Reference`; :func:`smetool.citation` and ``citation.bib`` collect them from the
objects that actually ran. A third-party plug-in declares its own references the same way, so it
is cited like a built-in one. The entries shared by several built-in classes are defined here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .version import __version__

__all__ = [
    "Reference",
    "unique_references",
    "format_citation",
    "SMETOOL",
    "KLOEDEN_PLATEN_1992",
    "MILSTEIN_TRETYAKOV_1997",
    "LI_TAI_E_2019",
    "ZHANG_2024_DROPOUT",
    "ZHANG_XU_2024_IMPLICIT",
    "ZHANG_2021_VARIANCE",
    "FENG_TU_2021",
    "LI_MALLADI_ARORA_2021",
    "MALLADI_2022_ADAPTIVE",
    "KINGMA_BA_2015",
    "FORET_2021_SAM",
    "COMPAGNONI_2023_SAM",
    "BERNSTEIN_2018_SIGNSGD",
    "COMPAGNONI_2025_ADAPTIVE",
    "LI_LYU_ARORA_2020",
    "BARRETT_DHERIN_2021",
    "SMITH_2021_ORIGIN",
    "ZHU_2019_ANISOTROPIC",
    "MILSTEIN_1986",
    "WAN_2013_DROPCONNECT",
    "SRIVASTAVA_2014_DROPOUT",
]


@dataclass(frozen=True)
class Reference:
    """One bibliography entry.

    Parameters
    ----------
    key : str
        The BibTeX key (``"zhang2024dropout"``); two references with the same key are the same.
    entry_type : str
        ``"article"``, ``"inproceedings"``, ``"book"``, ``"software"``, …
    fields : tuple of (str, str)
        The BibTeX fields in order, e.g. ``(("title", "…"), ("author", "…"), ("year", "2024"))``.

    Examples
    --------
    >>> ref = Reference.of("doe2026", "article", title="A title", author="Doe, J.", year="2026")
    >>> print(ref.bibtex())
    @article{doe2026,
      title  = {A title},
      author = {Doe, J.},
      year   = {2026}
    }
    """

    key: str
    entry_type: str
    fields: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key or any(c in self.key for c in " ,{}"):
            raise ValueError(
                f"`key` must be a BibTeX key (non-empty, no spaces, commas or braces); got "
                f"{self.key!r}.")
        if not isinstance(self.entry_type, str) or not self.entry_type.isalpha():
            raise ValueError(f"`entry_type` must be a BibTeX entry type; got {self.entry_type!r}.")
        names = [name for name, _ in self.fields]
        if "title" not in names:
            raise ValueError(f"reference {self.key!r}: `fields` must include a title.")

    @classmethod
    def of(cls, key: str, entry_type: str, **fields: str) -> Reference:
        """A reference from keyword fields, in the order given."""
        return cls(key, entry_type, tuple((k, str(v)) for k, v in fields.items()))

    def field(self, name: str) -> str | None:
        """The value of one field, or ``None``."""
        return dict(self.fields).get(name)

    def bibtex(self) -> str:
        """The entry as BibTeX text."""
        width = max(len(name) for name, _ in self.fields)
        body = ",\n".join(f"  {name:<{width}} = {{{value}}}" for name, value in self.fields)
        return f"@{self.entry_type}{{{self.key},\n{body}\n}}"

    def __str__(self) -> str:
        author, year, title = self.field("author"), self.field("year"), self.field("title")
        return f"{author} ({year}), {title}"


def unique_references(groups: Iterable[Iterable[Reference]]) -> tuple[Reference, ...]:
    """The references of several groups in order of first appearance, each key once."""
    seen: dict[str, Reference] = {}
    for group in groups:
        for ref in group:
            if not isinstance(ref, Reference):
                raise TypeError(f"references must be smetool.Reference objects; got {ref!r}.")
            seen.setdefault(ref.key, ref)
    return tuple(seen.values())


def format_citation(references: Iterable[Reference] = ()) -> str:
    """BibTeX for smetool followed by ``references`` (each key once), separated by blank lines."""
    return "\n\n".join(ref.bibtex() for ref in unique_references([(SMETOOL,), references]))


SMETOOL = Reference.of(
    "smetool", "software",
    title="smetool: stochastic modified equations of training algorithms",
    author="{The smetool developers}", version=__version__, year="2026",
    note="Batched SDE solvers and weak-order verification in PyTorch")

KLOEDEN_PLATEN_1992 = Reference.of(
    "kloeden1992", "book",
    title="Numerical Solution of Stochastic Differential Equations",
    author="Kloeden, Peter E. and Platen, Eckhard", publisher="Springer", year="1992")

MILSTEIN_TRETYAKOV_1997 = Reference.of(
    "milstein1997small", "article",
    title="Numerical Methods in the Weak Sense for Stochastic Differential Equations with Small "
    "Noise",
    author="Milstein, G. N. and Tretyakov, M. V.",
    journal="SIAM Journal on Numerical Analysis", volume="34", number="6", pages="2142--2167",
    year="1997")

LI_TAI_E_2019 = Reference.of(
    "li2019sme", "article",
    title="Stochastic Modified Equations and Dynamics of Stochastic Gradient Algorithms {I}: "
    "Mathematical Foundations",
    author="Li, Qianxiao and Tai, Cheng and E, Weinan",
    journal="Journal of Machine Learning Research", volume="20", number="40", pages="1--47",
    year="2019")

ZHANG_2024_DROPOUT = Reference.of(
    "zhang2024dropout", "inproceedings",
    title="Stochastic Modified Equations and Dynamics of Dropout Algorithm",
    author="Zhang, Zhongwang and Li, Yuqing and Luo, Tao and Xu, Zhi-Qin John",
    booktitle="International Conference on Learning Representations (ICLR)", year="2024")

ZHANG_XU_2024_IMPLICIT = Reference.of(
    "zhang2024implicit", "article",
    title="Implicit Regularization of Dropout",
    author="Zhang, Zhongwang and Xu, Zhi-Qin John",
    journal="IEEE Transactions on Pattern Analysis and Machine Intelligence", year="2024")

ZHANG_2021_VARIANCE = Reference.of(
    "zhang2021variance", "article",
    title="A Variance Principle Explains why Dropout Finds Flatter Minima",
    author="Zhang, Zhongwang and Zhou, Hanxu and Xu, Zhi-Qin John",
    journal="arXiv preprint arXiv:2111.01022", year="2021")

FENG_TU_2021 = Reference.of(
    "feng2021inverse", "article",
    title="The inverse variance--flatness relation in stochastic gradient descent is critical for "
    "finding flat minima",
    author="Feng, Yu and Tu, Yuhai",
    journal="Proceedings of the National Academy of Sciences", volume="118", number="9",
    pages="e2015617118", year="2021", doi="10.1073/pnas.2015617118")

LI_MALLADI_ARORA_2021 = Reference.of(
    "li2021svag", "inproceedings",
    title="On the Validity of Modeling {SGD} with Stochastic Differential Equations ({SDE}s)",
    author="Li, Zhiyuan and Malladi, Sadhika and Arora, Sanjeev",
    booktitle="Advances in Neural Information Processing Systems", year="2021")

MALLADI_2022_ADAPTIVE = Reference.of(
    "malladi2022adaptive", "inproceedings",
    title="On the {SDE}s and Scaling Rules for Adaptive Gradient Algorithms",
    author="Malladi, Sadhika and Lyu, Kaifeng and Panigrahi, Abhishek and Arora, Sanjeev",
    booktitle="Advances in Neural Information Processing Systems", volume="35", year="2022")

KINGMA_BA_2015 = Reference.of(
    "kingma2015adam", "inproceedings",
    title="Adam: A Method for Stochastic Optimization",
    author="Kingma, Diederik P. and Ba, Jimmy",
    booktitle="International Conference on Learning Representations", year="2015")

FORET_2021_SAM = Reference.of(
    "foret2021sam", "inproceedings",
    title="Sharpness-Aware Minimization for Efficiently Improving Generalization",
    author="Foret, Pierre and Kleiner, Ariel and Mobahi, Hossein and Neyshabur, Behnam",
    booktitle="International Conference on Learning Representations (ICLR)", year="2021")

COMPAGNONI_2023_SAM = Reference.of(
    "compagnoni2023sam", "inproceedings",
    title="An {SDE} for Modeling {SAM}: Theory and Insights",
    author="Compagnoni, Enea Monzio and Biggio, Luca and Orvieto, Antonio and Proske, Frank "
    "Norbert and Kersting, Hans and Lucchi, Aurelien",
    booktitle="Proceedings of the 40th International Conference on Machine Learning (ICML)",
    series="Proceedings of Machine Learning Research", volume="202", year="2023")

BERNSTEIN_2018_SIGNSGD = Reference.of(
    "bernstein2018signsgd", "inproceedings",
    title="{signSGD}: Compressed Optimisation for Non-Convex Problems",
    author="Bernstein, Jeremy and Wang, Yu-Xiang and Azizzadenesheli, Kamyar and Anandkumar, "
    "Animashree",
    booktitle="Proceedings of the 35th International Conference on Machine Learning (ICML)",
    series="Proceedings of Machine Learning Research", volume="80", year="2018")

COMPAGNONI_2025_ADAPTIVE = Reference.of(
    "compagnoni2025adaptive", "inproceedings",
    title="Adaptive Methods through the Lens of {SDE}s: Theoretical Insights on the Role of Noise",
    author="Compagnoni, Enea Monzio and Liu, Tianlin and Islamov, Rustem and Proske, Frank Norbert "
    "and Orvieto, Antonio and Lucchi, Aurelien",
    booktitle="International Conference on Learning Representations (ICLR)", year="2025",
    note="arXiv:2411.15958")

LI_LYU_ARORA_2020 = Reference.of(
    "li2020intrinsic", "inproceedings",
    title="Reconciling Modern Deep Learning with Traditional Optimization Analyses: The Intrinsic "
    "Learning Rate",
    author="Li, Zhiyuan and Lyu, Kaifeng and Arora, Sanjeev",
    booktitle="Advances in Neural Information Processing Systems", volume="33", year="2020")

BARRETT_DHERIN_2021 = Reference.of(
    "barrett2021implicit", "inproceedings",
    title="Implicit Gradient Regularization",
    author="Barrett, David G. T. and Dherin, Benoit",
    booktitle="International Conference on Learning Representations (ICLR)", year="2021")

SMITH_2021_ORIGIN = Reference.of(
    "smith2021origin", "inproceedings",
    title="On the Origin of Implicit Regularization in Stochastic Gradient Descent",
    author="Smith, Samuel L. and Dherin, Benoit and Barrett, David G. T. and De, Soham",
    booktitle="International Conference on Learning Representations (ICLR)", year="2021")

ZHU_2019_ANISOTROPIC = Reference.of(
    "zhu2019anisotropic", "inproceedings",
    title="The Anisotropic Noise in Stochastic Gradient Descent: Its Behavior of Escaping from "
    "Sharp Minima and Regularization Effects",
    author="Zhu, Zhanxing and Wu, Jingfeng and Yu, Bing and Wu, Lei and Ma, Jinwen",
    booktitle="Proceedings of the 36th International Conference on Machine Learning (ICML)",
    series="Proceedings of Machine Learning Research", volume="97", year="2019")

MILSTEIN_1986 = Reference.of(
    "milstein1986weak", "article",
    title="Weak Approximation of Solutions of Systems of Stochastic Differential Equations",
    author="Milstein, G. N.",
    journal="Theory of Probability and Its Applications", volume="30", number="4",
    pages="750--766", year="1986", doi="10.1137/1130095")

WAN_2013_DROPCONNECT = Reference.of(
    "wan2013dropconnect", "inproceedings",
    title="Regularization of Neural Networks using {DropConnect}",
    author="Wan, Li and Zeiler, Matthew and Zhang, Sixin and LeCun, Yann and Fergus, Rob",
    booktitle="Proceedings of the 30th International Conference on Machine Learning (ICML)",
    series="Proceedings of Machine Learning Research", volume="28", number="3",
    pages="1058--1066", year="2013")

SRIVASTAVA_2014_DROPOUT = Reference.of(
    "srivastava2014dropout", "article",
    title="Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    author="Srivastava, Nitish and Hinton, Geoffrey and Krizhevsky, Alex and Sutskever, Ilya and "
    "Salakhutdinov, Ruslan",
    journal="Journal of Machine Learning Research", volume="15", number="56", pages="1929--1958",
    year="2014")
