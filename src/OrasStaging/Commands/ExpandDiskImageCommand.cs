using System.Management.Automation;
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
    internal static readonly string[] CompressedExtensions = { ".gz", ".zst", ".zstd", ".xz", ".bz2" };

    /// <summary>The output file, or an existing folder to put it in. Default: beside the input, without the compression extension.</summary>
    [Parameter(Position = 1)]
    [Alias("Destination")]
    public string? DestinationPath { get; set; }

    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        foreach (string input in InputFiles())
        {
            string destination;
            try
            {
                destination = Destination(input);
                DestinationFile.CheckDestination(destination, Force);
            }
            catch (Exception ex) when (IsItemFailure(ex))
            {
                WriteMappedError(ex, input);
                continue;
            }

            if (!ShouldProcess(destination, $"Expand '{input}'"))
            {
                continue;
            }

            try
            {
                RunBlocking((sink, ct) => DestinationFile.WriteAsync(destination, Force,
                    temp => DiskImageConverter.ExpandFileAsync(input, temp, sink, ct, System.IO.Path.GetFileName(destination))));
            }
            catch (Exception ex) when (IsItemFailure(ex))
            {
                WriteMappedError(ex, input);
                continue;
            }

            WriteObject(FileOutput(destination));
        }
    }

    private string Destination(string input)
    {
        string name = System.IO.Path.GetFileName(input);
        string? ext = CompressedExtensions.FirstOrDefault(e => name.EndsWith(e, StringComparison.OrdinalIgnoreCase));
        string? stripped = ext is null ? null : name[..^ext.Length];
        if (DestinationPath is null || Directory.Exists(ResolveOutputPath(DestinationPath)))
        {
            if (string.IsNullOrEmpty(stripped))
            {
                throw new OrasStagingException(ErrorCode.InvalidArgument,
                    $"Cannot derive an output name from '{name}': it does not end in .gz, .zst, .xz or .bz2.",
                    "Give -DestinationPath.");
            }

            string folder = DestinationPath is null
                ? System.IO.Path.GetDirectoryName(input) ?? "."
                : ResolveOutputPath(DestinationPath);
            return System.IO.Path.Combine(folder, stripped);
        }

        return ResolveOutputPath(DestinationPath);
    }
}
