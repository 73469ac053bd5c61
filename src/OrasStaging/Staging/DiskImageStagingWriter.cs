using OrasStaging.DiskImages;

namespace OrasStaging.Staging;

/// <summary>The production writer: the native disk image writer decodes the stream and writes the target format.</summary>
internal sealed class DiskImageStagingWriter : IStagingWriter
{
    private readonly DiskWriteOptions _options;

    /// <summary>Checks the options before any registry is asked: valid, and a format written in one pass.</summary>
    public DiskImageStagingWriter(DiskWriteOptions options)
    {
        options.ValidateNative("Stage a qcow2, raw or vhd image (-Format), then use Convert-DiskImage for VHDX, VMDK or VDI.");
        _options = options;
    }

    /// <summary>The writer for an image at <paramref name="path"/>: -Format, else the extension's, else qcow2.</summary>
    public static DiskImageStagingWriter ForTarget(string path, DiskImageFormat? format, long growBy, long? size, bool reencode = false) =>
        new(new DiskWriteOptions
        {
            Format = DiskImageFormats.Choose(path, format, otherExtension: DiskImageFormat.Qcow2),
            GrowBy = growBy,
            Size = size,
            Reencode = reencode,
        });

    public DiskImageFormat Format => _options.Format;

    /// <summary>
    /// The decoded size the artifact declares (io.kubevirt.disk.size, the nosi metadata's raw size), once the layer
    /// is resolved: decoding past it fails at once with CorruptInput. Null: only -Size and the free space bound it.
    /// </summary>
    public long? DeclaredDecodedBytes { get; set; }

    /// <summary>containerDisk: the tar member the resolve step found the disk in; null: the first file under disk/.</summary>
    public string? TarMember { get; set; }

    public bool ReuseOutput { get; set; }

    public async Task<WrittenImage> WriteAsync(Stream input, long? inputLength, string outputPath, IOperationSink sink,
        CancellationToken cancellationToken)
    {
        var options = _options.Clone();
        options.InputLength = inputLength;
        options.MaxDecodedBytes = DeclaredDecodedBytes ?? options.MaxDecodedBytes;
        options.TarMember = TarMember;
        options.ReuseOutput = ReuseOutput;
        var result = await DiskImageWriter.WriteAsync(input, outputPath, options, sink, cancellationToken).ConfigureAwait(false);
        return new WrittenImage(result.Format, result.VirtualSize, result.FileSize, result.InputBytes);
    }
}
