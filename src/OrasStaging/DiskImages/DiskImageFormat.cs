using OrasStaging.Compression;

namespace OrasStaging.DiskImages;

/// <summary>A disk-image format; the type of Convert-DiskImage's -Format.</summary>
public enum DiskImageFormat
{
    Qcow2,
    Raw,
    Vhd,
    Vhdx,
    Vmdk,
    Vdi,
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

    /// <summary>The name shown in progress and Verbose when writing through a temporary file.</summary>
    internal string? DisplayName { get; set; }
}

public sealed record DiskWriteResult(
    DiskImageFormat Format,
    long VirtualSize,
    long FileSize,
    CompressionKind Compression,
    long InputBytes,
    long DecodedBytes);
