using OrasStaging.Compression;

namespace OrasStaging.DiskImages;

/// <summary>A disk-image format: the type of -Format, of what the writers write and of what the results report.</summary>
public enum DiskImageFormat
{
    Qcow2,
    Raw,
    Vhd,
    Vhdx,
    Vmdk,
    Vdi,
}

/// <summary>The rules about a <see cref="DiskImageFormat"/>: its name, whether it is written natively, and the extension rule.</summary>
public static class DiskImageFormats
{
    /// <summary>The lower-case name shown to users and written to receipts: "qcow2", "raw", "vhd"…</summary>
    public static string Name(this DiskImageFormat format) => format.ToString().ToLowerInvariant();

    /// <summary>Written in one streaming pass by this module, with no external tool.</summary>
    public static bool IsNative(this DiskImageFormat format) =>
        format is DiskImageFormat.Qcow2 or DiskImageFormat.Raw or DiskImageFormat.Vhd;

    /// <summary>The format a file name's extension stands for (.img and .raw are raw), or null for any other extension.</summary>
    public static DiskImageFormat? FromExtension(string path) =>
        Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".qcow2" => DiskImageFormat.Qcow2,
            ".img" or ".raw" => DiskImageFormat.Raw,
            ".vhd" => DiskImageFormat.Vhd,
            ".vhdx" => DiskImageFormat.Vhdx,
            ".vmdk" => DiskImageFormat.Vmdk,
            ".vdi" => DiskImageFormat.Vdi,
            _ => null,
        };

    /// <summary>
    /// The format to write to <paramref name="path"/>: <paramref name="requested"/> when given, else the extension's,
    /// else <paramref name="otherExtension"/>; InvalidArgument when that is null too.
    /// </summary>
    public static DiskImageFormat Choose(string path, DiskImageFormat? requested, DiskImageFormat? otherExtension) =>
        requested ?? FromExtension(path) ?? otherExtension
            ?? throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"Cannot tell the target format from '{Path.GetFileName(path)}'.",
                "Give -Format (qcow2, raw, vhd, vhdx, vmdk, vdi) or use one of those extensions (.img for raw).");
}

/// <summary>What the decoded bytes of an input are, as told by their signatures.</summary>
internal enum SourceFormat
{
    /// <summary>Raw bytes (MBR, GPT, ISO 9660 or anything unrecognised); a fixed VHD also reads as raw until its footer.</summary>
    Raw,
    Qcow2,
    Vmdk,
    Vhdx,
    VhdDynamic,
    Vdi,
}

public sealed class DiskWriteOptions
{
    public DiskImageFormat Format { get; set; } = DiskImageFormat.Qcow2;

    /// <summary>Bytes added to the virtual size (input rounded up to 512).</summary>
    public long GrowBy { get; set; }

    /// <summary>Exact virtual size; InvalidArgument when below the input.</summary>
    public long? Size { get; set; }

    /// <summary>Compressed input length when known, for progress and the free-space check.</summary>
    public long? InputLength { get; set; }

    public string? QemuImgPath { get; set; }

    /// <summary>
    /// A qcow2 input to a qcow2 target is written anew through the reader (64 KiB clusters, uncompressed, no
    /// snapshots, zero clusters dropped) instead of being copied as is and grown in place. No effect otherwise.
    /// </summary>
    public bool Reencode { get; set; }

    /// <summary>
    /// The decoded size the artifact declares (e.g. io.kubevirt.disk.size), when it states one: decoding past it is
    /// CorruptInput at once. Null when nothing is declared; -Size and the free space still bound the output.
    /// </summary>
    public long? MaxDecodedBytes { get; set; }

    /// <summary>For a containerDisk layer: the tar member the resolve step found the disk in (e.g. disk/disk.qcow2).</summary>
    internal string? TarMember { get; set; }

    /// <summary>
    /// The output path may hold the partial a killed install of this image left: it is opened instead of created, and
    /// only bytes that differ from it are written (<see cref="ImageFile"/>). The result is the same either way.
    /// </summary>
    internal bool ReuseOutput { get; set; }

    /// <summary>The name shown in progress and Verbose when writing through a temporary file.</summary>
    internal string? DisplayName { get; set; }

    internal DiskWriteOptions Clone() => (DiskWriteOptions)MemberwiseClone();

    /// <summary>The one check of the options, made before any byte is read (or any registry asked).</summary>
    internal void Validate()
    {
        if (GrowBy < 0)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument, $"GrowBy must not be negative (got {GrowBy}).");
        }

        if (Size is { } size && size < 0)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument, $"Size must not be negative (got {size}).");
        }

        if (Size is not null && GrowBy != 0)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument, "Give either GrowBy or Size, not both.",
                "Use -GrowBy to add to the input's size, or -Size for an exact virtual size.");
        }

        WriteSizes.CheckRange(this);
    }

    /// <summary>For a one-pass writer: the options are valid and the format is one it writes.</summary>
    internal void ValidateNative(string recommendedAction)
    {
        Validate();
        if (!Format.IsNative())
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"{Format.Name()} is not written natively in one streaming pass.", recommendedAction);
        }
    }
}

public sealed record DiskWriteResult(
    DiskImageFormat Format,
    long VirtualSize,
    long FileSize,
    CompressionKind Compression,
    long InputBytes,
    long DecodedBytes);
