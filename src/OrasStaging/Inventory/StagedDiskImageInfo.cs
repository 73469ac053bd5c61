namespace OrasStaging.Inventory;

/// <summary>What is wrong with a staged image, as Get-StagedDiskImage reports it rather than hiding it.</summary>
public enum StagedImageProblem
{
    None,

    /// <summary>A stamp or receipt whose image file is gone.</summary>
    MissingImage,

    /// <summary>The receipt exists but cannot be read as JSON or names no valid digest.</summary>
    UnreadableReceipt,

    /// <summary>The stamp is empty or not a sha256/sha512 digest.</summary>
    InvalidStamp,

    /// <summary>Receipt and stamp name different layer digests: one of them is stale.</summary>
    DigestDisagrees,

    /// <summary>A receipt without a stamp: the image is not recorded as staged, so the next install pulls it again.</summary>
    MissingStamp,

    /// <summary>The receipt was written by a newer module version; fields it added are not shown.</summary>
    NewerModuleVersion,

    /// <summary>The file at the image path (of a stamp alone) is no disk image: an archive, a web page, an executable.</summary>
    NotADiskImage,
}

/// <summary>One staged image found on disk: Get-StagedDiskImage's output.</summary>
public sealed class StagedDiskImageInfo
{
    /// <summary>The image's file name.</summary>
    public string Name { get; init; } = string.Empty;

    /// <summary>The full path of the image file (whether or not it exists).</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>From the receipt; for a cijoe stamp alone, what the format detector said, else empty.</summary>
    public string Format { get; init; } = string.Empty;

    /// <summary>The layer digest: the stamp's, else the receipt's.</summary>
    public string? Digest { get; init; }

    public string? ManifestDigest { get; init; }

    /// <summary>The reference it was staged from; null for a cijoe stamp alone.</summary>
    public string? Reference { get; init; }

    /// <summary>The receipt's time; for a stamp alone, the stamp's last write (it is written when the image is committed).</summary>
    public DateTimeOffset? StagedAt { get; init; }

    /// <summary>The module version that wrote the receipt; null for a cijoe stamp alone.</summary>
    public string? ModuleVersion { get; init; }

    public bool HasStamp { get; init; }

    public bool HasReceipt { get; init; }

    public StagedImageProblem Problem { get; init; }

    /// <summary>A sentence for people when <see cref="Problem"/> is not None.</summary>
    public string? ProblemMessage { get; init; }

    /// <summary>With -CheckRemote: does the tag still point at the staged digest. Null when not checked or not checkable.</summary>
    public bool? Current { get; set; }

    public override string ToString() => Path;
}
