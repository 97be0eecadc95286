// SPDX-License-Identifier: Apache-2.0

pragma solidity 0.8.19;

// Ciro's on-chain payment: a user escrows a job's price; the operator is paid only by a proof
// that the model's verifier accepts and that is about the job's input. Compiled with the pinned
// solc-js 0.8.19 (verifier/evm), optimizer off, like the generated verifiers.

/// The ERC-20 calls the escrow makes.
interface IERC20 {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// A dev-chain ERC-20 (CIRO, USDC) that anyone may mint. For local and test chains only.
contract TestToken {
    string public name;
    string public symbol;
    uint8 public immutable decimals;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor(string memory name_, string memory symbol_, uint8 decimals_) {
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
    }

    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _move(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= amount, "allowance too low");
            allowance[from][msg.sender] = allowed - amount;
        }
        _move(from, to, amount);
        return true;
    }

    function _move(address from, address to, uint256 amount) private {
        require(balanceOf[from] >= amount, "balance too low");
        unchecked {
            balanceOf[from] -= amount;
        }
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}

/// Escrow for proved inference jobs.
///
/// A job is its terms; its id is their hash, so the escrow stores one word per job (its state)
/// and every call that acts on a job restates the terms. The operator (the deployer) can only
/// register a model's verifier once, settle a job with a proof the verifier accepts, or refund a
/// job to its user early. Nothing else moves tokens: no upgrade, no withdrawal, no fee switch.
contract CiroEscrow {
    struct Terms {
        /// The service's reference for the job (its job id).
        bytes32 ref;
        /// Who paid, and who any refund goes to.
        address user;
        address token;
        uint256 price;
        /// After this (unix seconds) the job can no longer be settled and the user may reclaim.
        uint64 deadline;
        /// The model's commitment; selects the verifier.
        bytes32 model;
        /// keccak256 of the proof's input words (the Poseidon hash of the input, for a hashed
        /// input; its values, for a public one): the first `inputWords` words of the proof.
        bytes32 input;
    }

    struct Model {
        address verifier;
        uint32 inputWords;
        uint32 outputWords;
    }

    bytes32 internal constant OPEN = bytes32(uint256(1));
    bytes32 internal constant REFUNDED = bytes32(uint256(2));

    address public immutable operator;
    mapping(bytes32 => Model) public models;
    /// A job's state: 0 unknown, 1 open, 2 refunded; anything else is settled and is the
    /// keccak256 of the proved output words.
    mapping(bytes32 => bytes32) public jobs;

    event ModelRegistered(bytes32 indexed model, address verifier, uint32 inputWords, uint32 outputWords);
    event Opened(bytes32 indexed id, bytes32 indexed ref, address indexed user, Terms terms);
    event Settled(bytes32 indexed id, bytes32 outputHash, uint256 price);
    event Refunded(bytes32 indexed id, uint256 price);

    modifier onlyOperator() {
        require(msg.sender == operator, "only the operator");
        _;
    }

    constructor() {
        operator = msg.sender;
    }

    function jobId(Terms calldata t) public pure returns (bytes32) {
        return keccak256(abi.encode(t));
    }

    /// Binds a model commitment to its verifier, once: a registration never changes, so an open
    /// job is always settled by the verifier it was opened under.
    function register(bytes32 model, address verifier, uint32 inputWords, uint32 outputWords)
        external
        onlyOperator
    {
        require(models[model].verifier == address(0), "model already registered");
        require(verifier.code.length > 0, "the verifier has no code");
        // A proof that shows nothing of its input would settle any job of the model.
        require(inputWords > 0, "a proof must show its input or its hash");
        require(outputWords > 0, "a proof shows at least one output");
        models[model] = Model(verifier, inputWords, outputWords);
        emit ModelRegistered(model, verifier, inputWords, outputWords);
    }

    /// Opens a job by transferring its price in (approve the escrow first).
    function open(Terms calldata t) external returns (bytes32 id) {
        require(t.user == msg.sender, "the terms name another user");
        require(models[t.model].verifier != address(0), "the model is not registered");
        require(t.deadline > block.timestamp, "the deadline has passed");
        require(t.price > 0, "the price is zero");
        id = keccak256(abi.encode(t));
        require(jobs[id] == bytes32(0), "the job is already open");
        jobs[id] = OPEN;
        _pull(t.token, msg.sender, t.price);
        emit Opened(id, t.ref, msg.sender, t);
    }

    /// Pays the operator for a job whose proof the model's verifier accepts and whose input
    /// words hash to the job's input commitment. `proof` is the verifier's calldata.
    function settle(Terms calldata t, bytes calldata proof) external onlyOperator {
        bytes32 id = keccak256(abi.encode(t));
        require(jobs[id] == OPEN, "the job is not open");
        require(block.timestamp <= t.deadline, "the deadline has passed");
        Model memory m = models[t.model];
        uint256 inputEnd = uint256(m.inputWords) * 32;
        uint256 outputEnd = inputEnd + uint256(m.outputWords) * 32;
        require(proof.length >= outputEnd, "the proof is too short");
        require(keccak256(proof[:inputEnd]) == t.input, "the proof is about another input");
        (bool accepted,) = m.verifier.call(proof);
        require(accepted, "the verifier rejects the proof");
        bytes32 outputHash = keccak256(proof[inputEnd:outputEnd]);
        require(uint256(outputHash) > 2, "reserved output hash");
        jobs[id] = outputHash;
        _push(t.token, operator, t.price);
        emit Settled(id, outputHash, t.price);
    }

    /// Returns an open job's price to its user: by anyone after the deadline, or by the operator
    /// at any time (a job it will not prove).
    function refund(Terms calldata t) external {
        bytes32 id = keccak256(abi.encode(t));
        require(jobs[id] == OPEN, "the job is not open");
        require(block.timestamp > t.deadline || msg.sender == operator, "the deadline has not passed");
        jobs[id] = REFUNDED;
        _push(t.token, t.user, t.price);
        emit Refunded(id, t.price);
    }

    function _pull(address token, address from, uint256 amount) private {
        _call(token, abi.encodeCall(IERC20.transferFrom, (from, address(this), amount)));
    }

    function _push(address token, address to, uint256 amount) private {
        _call(token, abi.encodeCall(IERC20.transfer, (to, amount)));
    }

    /// A token call that must succeed and return true or nothing (tokens that predate ERC-20's
    /// return value).
    function _call(address token, bytes memory data) private {
        require(token.code.length > 0, "the token has no code");
        (bool ok, bytes memory ret) = token.call(data);
        require(ok && (ret.length == 0 || abi.decode(ret, (bool))), "the token transfer failed");
    }
}
