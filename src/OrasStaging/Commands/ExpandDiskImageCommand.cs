using System.Management.Automation;
using OrasStaging.Compression;
using OrasStaging.DiskImages;

namespace OrasStaging.Commands;

/// <summary>
/// Decompresses a gzip, zstd, xz or bzip2 disk image into a sparse file; the compression is told by the magic
/// bytes, the default destination is the name without .gz/.zst/.xz/.bz2.
/// </summary>
[Cmdlet(VerbsData.Expand, "DiskImage", DefaultParameterSetName = PathSet, SupportsShouldProcess = true,
    HelpUri = "https://github.com/safl/OrasStaging#expand-diskimage")]
[OutputType(typeof(FileInfo))]
public sealed class ExpandDiskImageCommand : FileInputCmdletBase
{
    /// <summary>The output file, or an existing folder to put it in. Default: beside the input, without the compression extension.</summary>
    [Parameter(Position = 1)]
    [Alias("Destination")]
    public string? DestinationPath { get; set; }

    /// <summary>Raw or Vhd decodes a qcow2 inside the compressed file natively; by default the destination's extension (.img, .raw, .vhd) asks for it.</summary>
    [Parameter]
    [ValidateSet("Qcow2", "Raw", "Vhd")]
    public DiskImageFormat? Format { get; set; }

    private protected override FileJob Plan(string input)
    {
        string destination = Destination(input);
        var wanted = Format ?? DiskImageFormats.FromExtension(destination);
        return new FileJob(destination, $"Expand '{input}'", (temp, sink, ct) =>
            DiskImageConverter.ExpandFileAsync(input, temp, sink, ct, System.IO.Path.GetFileName(destination), wanted));
    }

    /// <summary>-DestinationPath when it names a file; otherwise the input's output name in that folder, or beside the input.</summary>
    private string Destination(string input)
    {
        if (DestinationPath is null)
        {
            return System.IO.Path.Combine(System.IO.Path.GetDirectoryName(input) ?? ".",
                CompressedName.OutputName(System.IO.Path.GetFileName(input)));
        }

        string target = ResolveOutputPath(DestinationPath);
        return Directory.Exists(target)
            ? System.IO.Path.Combine(target, CompressedName.OutputName(System.IO.Path.GetFileName(input)))
            : target;
    }
}
