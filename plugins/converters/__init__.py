"""Built-in plugin: ``segkit convert``, other projects' weight files as segkit files.

Light on purpose: the command's work is imported only when it runs.
"""

import argparse

import segkit

FORMATS = ("csail", "drn", "torchvision")
DESCRIPTION = """\
Rename another project's weights into segkit's layout, check that they fit the model
exactly, and write a segkit file (docs/weights.md):

  --from csail ENCODER DECODER --config CONFIG
      a CSAIL semantic-segmentation-pytorch model -> a segkit checkpoint
  --from drn FILE --config CONFIG
      an official DRNSeg model -> a segkit checkpoint
  --from drn FILE --backbone NAME (or --config CONFIG)
      an official DRN ImageNet classifier -> a backbone weight file
  --from torchvision FILE --backbone NAME (or --config CONFIG)
      a torchvision ImageNet ResNet -> a backbone weight file
"""


@segkit.hookimpl
def segkit_register_commands(subparsers):
    parser = subparsers.add_parser(
        "convert",
        help="convert CSAIL, DRN or torchvision weights into segkit files",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=DESCRIPTION,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="the original weight file(s)")
    parser.add_argument(
        "--from",
        dest="source_format",
        choices=FORMATS,
        required=True,
        help="the layout of the original files",
    )
    parser.add_argument("--config", help="the segkit config of the model the weights are for")
    parser.add_argument(
        "--backbone",
        metavar="NAME",
        help="for backbone weights without a config: the backbone they are for (resnet50, drn_d_22, ...)",
    )
    parser.add_argument("--out", required=True, help="the segkit file to write (.pt)")
    parser.set_defaults(handler=_run)


def _run(args) -> int:
    from segkit_plugins.converters.command import run_convert

    return run_convert(args)
