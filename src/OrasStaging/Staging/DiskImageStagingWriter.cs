using OrasStaging.DiskImages;

namespace OrasStaging.Staging;

/// <summary>The production writer: the native disk image writer decodes the stream and writes the target format.</summary>
internal sealed class DiskImageStagingWriter : IStagingWriter
{
    private readonly DiskImageFormat _format;
    private readonly long _growBy;
    private readonly long? _size;

    public DiskImageStagingWriter(string format, long growBy, long? size)
    {
        _format = Enum.Parse<DiskImageFormat>(format, ignoreCase: true);
        _growBy = growBy;
        _size = size;
        FormatName = format.ToLowerInvariant();
    }

    public string FormatName { get; }

    public async Task<WrittenImage> WriteAsync(Stream input, long? inputLength, string outputPath, IOperationSink sink,
        CancellationToken cancellationToken)
    {
        var options = new DiskWriteOptions
        {
            Format = _format,
            GrowBy = _growBy,
            Size = _size,
            InputLength = inputLength,
        };
        var result = await DiskImageWriter.WriteAsync(input, outputPath, options, sink, cancellationToken).ConfigureAwait(false);
        return new WrittenImage(result.Format.ToString().ToLowerInvariant(), result.VirtualSize, result.FileSize, result.InputBytes);
    }
}
