using System.Management.Automation;
using OrasStaging.DiskImages;

namespace OrasStaging.Commands;

/// <summary>
/// Converts a disk image, compressed or not, to qcow2, raw, fixed VHD (natively, in one pass) or VHDX, VMDK,
/// VDI (through qemu-img), optionally growing it.
/// </summary>
[Cmdlet(VerbsData.Convert, "DiskImage", DefaultParameterSetName = PathSet, SupportsShouldProcess = true,
    HelpUri = "https://github.com/safl/OrasStaging#convert-diskimage")]
[OutputType(typeof(FileInfo), typeof(StagedImage))]
public sealed partial class ConvertDiskImageCommand : FileInputCmdletBase
{
    [Parameter(Mandatory = true, Position = 1)]
    [Alias("Destination")]
    [ValidateNotNullOrEmpty]
    public string DestinationPath { get; set; } = string.Empty;

    /// <summary>The target format; by default taken from the destination's extension.</summary>
    [Parameter]
    public DiskImageFormat? Format { get; set; }

    /// <summary>Bytes added to the virtual size, e.g. 8GB.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long GrowBy { get; set; }

    /// <summary>The exact virtual size in bytes; not below the input.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long? Size { get; set; }

    [Parameter]
    public string? QemuImgPath { get; set; }

    /// <summary>qcow2 to qcow2: write a new image through the reader instead of copying the input as is.</summary>
    [Parameter]
    public SwitchParameter Reencode { get; set; }

    private protected override FileJob Plan(string input)
    {
        string destination = ResolveOutputPath(DestinationPath);
        var options = new DiskWriteOptions
        {
            Format = DiskImageFormats.Choose(destination, Format, otherExtension: null),
            GrowBy = GrowBy,
            Size = Size,
            Reencode = Reencode,
            QemuImgPath = QemuImgPath is null ? null : ResolveOutputPath(QemuImgPath),
            DisplayName = System.IO.Path.GetFileName(destination),
        };

        return new FileJob(destination, $"Convert '{input}' to {options.Format}",
            (temp, sink, ct) => DiskImageConverter.ConvertFileAsync(input, temp, options, sink, ct));
    }
}
